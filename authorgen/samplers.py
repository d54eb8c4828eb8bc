"""Samplers: each turns a batch of next-token scores into new scores, and `Sampler` draws.

Every step of generation, the scores (B, V) of the samples still being written go through
these, in this order (each is left out at its default, so it costs nothing when off):

1. bans: ids never to print (`<unk>`, control pieces) and pieces that would break UTF-8
   (`Generation` applies them: they depend on each sample's decoder);
2. `RepetitionPenalty` (CTRL's): the scores of tokens among the last `window` (prompt
   included) are divided by the penalty when positive, multiplied when negative;
3. `NoRepeatNgram`: tokens that would complete an n-gram of tokens already in the text are
   banned (lifted for a sample in which it would ban everything);
4. `Temperature`: scores / T; at 0 the likeliest token is taken and 5-6 are skipped;
5. `TopK`: only the k likeliest stay (ties with the k-th stay too);
6. `TopP`: only the fewest likeliest whose probabilities add up to p stay;
7. one draw per sample: a uniform number from the sample's own generator against the
   cumulative probabilities.

Each sampler checks its own setting when built (ValueError), so a caller that skips
`SampleConfig` cannot pass a value that would quietly do something else. They work in float64
on whatever device the scores are on; `history` is each sample's token ids so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from authorgen.config import SampleConfig

NEG_INF = float("-inf")
History = Sequence[Sequence[int]]  # each sample's token ids so far, prompt included


def _require(ok: bool, what: str, value) -> None:
    if not ok:
        raise ValueError(f"{what} (got {value!r})")


def ban(scores: torch.Tensor, row: int, ids: Sequence[int]) -> torch.Tensor:
    """`scores` (B, V) with the `ids` of sample `row` at -inf (a copy when any is banned)."""
    if len(ids):
        scores = scores.clone()
        scores[row, torch.as_tensor(ids, dtype=torch.long, device=scores.device)] = NEG_INF
    return scores


class RepetitionPenalty:
    """Divide positive (multiply negative) scores of the tokens in the last `window` ids."""

    def __init__(self, penalty: float, window: int = 64):
        _require(
            math.isfinite(penalty) and penalty > 0,
            "the repetition penalty must be above 0",
            penalty,
        )
        _require(isinstance(window, int) and window >= 1, "the window must be at least 1", window)
        self.penalty, self.window = penalty, window

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
        _require(isinstance(n, int) and n >= 1, "n-grams must have at least 1 token", n)
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


class NoRepeatNgram:
    """Ban the tokens that would repeat an n-gram of the sample's own ids, unless that would
    leave the sample no token at all. Remembers each sample's n-grams between steps."""

    def __init__(self, n: int):
        NgramMemory(n)  # checks n
        self.n = n
        self.memories: list[NgramMemory] = []

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        if not self.memories:
            self.memories = [NgramMemory(self.n) for _ in history]
        for row, (ids, memory) in enumerate(zip(history, self.memories, strict=True)):
            for token in ids[memory.count :]:
                memory.add(token)
            banned = ban(scores, row, memory.banned())
            if torch.isfinite(banned[row]).any():
                scores = banned
        return scores


class Temperature:
    """Divide the scores by T > 0: below 1 sharper, above 1 flatter."""

    def __init__(self, temperature: float):
        _require(
            math.isfinite(temperature) and temperature > 0, "sampling needs T > 0", temperature
        )
        self.temperature = temperature

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """Keep the k largest scores of each row (and any tied with the k-th); the rest become -inf."""

    def __init__(self, k: int):
        _require(isinstance(k, int) and k >= 1, "top-k must be at least 1", k)
        self.k = k

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        if self.k >= scores.shape[-1]:
            return scores
        kth = torch.topk(scores, self.k, dim=-1).values[:, -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP:
    """Keep the fewest likeliest tokens of each row whose probabilities reach p (nucleus
    sampling)."""

    def __init__(self, p: float):
        _require(0.0 < p <= 1.0, "top-p must be above 0 and at most 1", p)
        self.p = p

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        if self.p >= 1.0:
            return scores
        probs = torch.softmax(scores, dim=-1)
        order = torch.argsort(probs, dim=-1, descending=True, stable=True)  # (B, V)
        ordered = probs.gather(-1, order)
        before = torch.cumsum(ordered, dim=-1) - ordered  # mass of the likelier tokens
        drop = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, before >= self.p)
        return scores.masked_fill(drop, NEG_INF)


def draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One token per row of `probs` (B, V) by inverse transform: the first whose cumulative
    probability exceeds a uniform draw from that row's generator. A zero-probability token is
    never taken. Returns the ids (B,)."""
    cumulative = torch.cumsum(probs, dim=-1)
    totals = cumulative[:, -1]
    total = float(totals.min()) if len(totals) else 1.0
    _require(
        math.isfinite(float(totals.sum())) and total > 0 and bool((probs >= 0).all()),
        "bad probabilities",
        total,
    )
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    u = u.to(probs.device) * totals
    at = torch.searchsorted(cumulative, u[:, None], right=True)[:, 0]
    return at.clamp(max=probs.shape[-1] - 1)


class Sampler:
    """The samplers `config` turns on, in the order above, and the draw.

    `penalize` applies steps 2-3 (they look at what was written), `distribution` steps 4-6;
    a token refused afterwards (`--max-copy`) is banned in the penalized scores and the draw is
    repeated from them, so steps 4-6 see the ban.
    """

    def __init__(self, config: SampleConfig):
        self.greedy = config.temperature == 0
        # samplers with the same key turn the same penalized scores into the same draws
        self.key = (self.greedy, config.temperature, config.top_k, config.top_p)
        self.penalties: list = []
        if config.repetition_penalty != 1.0:
            self.penalties.append(
                RepetitionPenalty(config.repetition_penalty, config.repetition_window)
            )
        if config.no_repeat_ngram:
            self.penalties.append(NoRepeatNgram(config.no_repeat_ngram))
        self.shaping: list = []
        if not self.greedy:
            self.shaping.append(Temperature(config.temperature))
            if config.top_k is not None:
                self.shaping.append(TopK(config.top_k))
            if config.top_p < 1.0:
                self.shaping.append(TopP(config.top_p))

    def penalize(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        for sampler in self.penalties:
            scores = sampler(scores, history)
        return scores

    def distribution(self, scores: torch.Tensor, history: History = ()) -> torch.Tensor:
        """Probabilities (B, V) after temperature, top-k and top-p."""
        for sampler in self.shaping:
            scores = sampler(scores, history)
        return torch.softmax(scores, dim=-1)

    def choose(
        self, scores: torch.Tensor, generators: Sequence[torch.Generator | None]
    ) -> torch.Tensor:
        """One token per row of penalized `scores` (B, V): the likeliest when greedy, else a
        draw from each row's generator."""
        if self.greedy:
            return scores.argmax(dim=-1)
        return draw(self.distribution(scores), generators)
