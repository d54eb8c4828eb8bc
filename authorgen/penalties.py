"""Stages that look at what each sample wrote (the n-gram mix, and the penalties on repeating
it), run per job before the shaping stages of `samplers.py`; see there for the whole order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from authorgen.config import SampleConfig
from authorgen.known_words import token_texts
from authorgen.stages import History, Stage, ban, require


@dataclass(eq=False)
class NgramMix(Stage):
    """The log of p = w p_model + (1 - w) p_counts for each row given its sample's tokens so far
    (`ngrams.NGrams.mix`; with `share`, 1 - w is that many times the fitted one), from the
    model's logits; in float64, on the host."""

    counts: object  # ngrams.NGrams
    share: float = 1.0  # the counts' weight, as a multiple of the fitted one
    reads_history = True

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        model = torch.softmax(scores.cpu().double(), dim=-1).numpy()
        mixed = self.counts.mix(model, [list(ids) for ids in history], self.share)
        return torch.from_numpy(mixed).log()


@dataclass
class RepetitionPenalty(Stage):
    """CTRL's penalty on the tokens among the last `window` ids: positive scores divided by it,
    negative ones multiplied. On log-probabilities (the n-gram mix) every score is negative, so
    a recent token's probability p becomes p**penalty before renormalising."""

    penalty: float
    window: int = 64
    reads_history = True

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.penalty) and self.penalty > 0,
            "the repetition penalty must be above 0",
            self.penalty,
        )
        require(
            isinstance(self.window, int) and self.window >= 1,
            "the window must be at least 1",
            self.window,
        )

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        recent = torch.zeros_like(scores, dtype=torch.bool)  # (B, V)
        for row, ids in enumerate(history):
            if ids:
                recent[row, torch.tensor(ids[-self.window :], device=scores.device)] = True
        penalized = torch.where(scores > 0, scores / self.penalty, scores * self.penalty)
        return torch.where(recent, penalized, scores)


class NgramMemory:
    """The n-grams of tokens seen so far, to ban the tokens that would repeat one."""

    def __init__(self, n: int, ids: Sequence[int] = ()):
        require(isinstance(n, int) and n >= 1, "n-grams must have at least 1 token", n)
        self.n = n
        self.seen: dict[tuple[int, ...], set[int]] = {}
        self.tail: list[int] = []
        self.count = 0  # tokens added
        for i in ids:
            self.add(i)

    def add(self, token: int) -> None:
        if len(self.tail) == self.n - 1:
            self.seen.setdefault(tuple(self.tail), set()).add(token)
        self.tail = ([*self.tail, token])[-(self.n - 1) :] if self.n > 1 else []
        self.count += 1

    def banned(self) -> list[int]:
        """Tokens that would complete an n-gram already seen."""
        return sorted(self.seen.get(tuple(self.tail), ()))


@dataclass
class NoRepeatNgram(Stage):
    """Ban the tokens that would repeat an n-gram of the sample's own ids, unless that would
    leave the sample no token at all. Remembers each sample's n-grams between steps (by its
    history list)."""

    n: int
    memories: dict = field(default_factory=dict, init=False, repr=False)
    reads_history = True

    def __post_init__(self) -> None:
        NgramMemory(self.n)  # checks n

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        for row, ids in enumerate(history):
            _, memory = self.memories.setdefault(id(ids), (ids, NgramMemory(self.n)))
            for token in ids[memory.count :]:
                memory.add(token)
            banned = ban(scores, row, memory.banned())
            if torch.isfinite(banned[row]).any():
                scores = banned
        return scores


@dataclass(eq=False)
class Dry(Stage):
    """DRY, "don't repeat yourself" (Weidmann 2024): a token that would extend a repeat of what
    the sample wrote (prompt included, its last `window` tokens) to more than `allowed` tokens
    loses `multiplier * base ** (length - allowed)` from its score, where `length` is how many
    tokens before it already repeat. A repeat never runs across a `breakers` token (a new line,
    a colon, a double quote): dialogue and layout repeat by nature."""

    multiplier: float
    allowed: int = 2
    base: float = 1.75
    window: int = 1024
    breakers: frozenset = frozenset()
    reads_history = True

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.multiplier) and self.multiplier > 0,
            "the DRY multiplier must be above 0",
            self.multiplier,
        )
        require(
            isinstance(self.allowed, int) and self.allowed >= 1,
            "DRY's allowed length must be at least 1",
            self.allowed,
        )
        require(math.isfinite(self.base) and self.base > 1, "DRY's base must be above 1", self.base)

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        out = scores
        for row, ids in enumerate(history):
            lengths = repeat_lengths(ids[-self.window :], self.breakers)
            long = {t: n for t, n in lengths.items() if n >= self.allowed}
            if not long:
                continue
            if out is scores:
                out = scores.clone()
            tokens = torch.tensor(list(long), dtype=torch.long, device=scores.device)
            excess = torch.tensor(list(long.values()), dtype=scores.dtype, device=scores.device)
            out[row, tokens] -= self.multiplier * self.base ** (excess - self.allowed)
        return out


def repeat_lengths(ids: Sequence[int], breakers: frozenset = frozenset()) -> dict[int, int]:
    """For each token that has followed the text's ending before: how many tokens of that
    ending (the longest, up to its last token) came before it then. No repeat runs across a
    token of `breakers`, and a breaker is never counted as the token that would follow."""
    import numpy as np

    h = np.asarray(ids, dtype=np.int64)
    n = len(h)
    if n < 2 or int(h[-1]) in breakers:
        return {}
    broken = np.isin(h, np.fromiter(breakers, dtype=np.int64)) if breakers else np.zeros(n, bool)
    ends = np.flatnonzero(h[:-1] == h[-1])  # where an earlier copy of the last token ends
    length = np.ones(len(ends), dtype=np.int64)
    live = np.arange(len(ends))
    for k in range(1, n):
        if not len(live) or broken[n - 1 - k]:
            break
        at = ends[live] - k
        ok = at >= 0
        live, at = live[ok], at[ok]
        ok = (h[at] == h[n - 1 - k]) & ~broken[at]
        live = live[ok]
        length[live] += 1
    out: dict[int, int] = {}
    for end, count in zip(ends.tolist(), length.tolist(), strict=True):
        token = int(h[end + 1])
        if token not in breakers and count > out.get(token, 0):
            out[token] = count
    return out


BREAKERS = '\n:"“”*'  # no DRY repeat runs across a token with one of these


def breakers_of(tokenizer) -> frozenset[int]:
    """The tokens of `tokenizer` that end a repeat for DRY (their text has one of BREAKERS)."""
    texts = token_texts(tokenizer)
    return frozenset(i for i, t in enumerate(texts) if t and any(c in t for c in BREAKERS))


def penalties(config: SampleConfig, breakers: frozenset = frozenset()) -> list[Stage]:
    """Stage 3: the stages `config` turns on that look at what each sample wrote (`breakers`:
    the tokens no DRY repeat runs across)."""
    out: list[Stage] = []
    if config.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(config.repetition_penalty, config.repetition_window))
    if config.no_repeat_ngram:
        out.append(NoRepeatNgram(config.no_repeat_ngram))
    if config.dry:
        out.append(Dry(config.dry, config.dry_allowed, breakers=breakers))
    return out
