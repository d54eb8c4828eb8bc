"""Score stages: each turns a batch of next-token scores into new scores; `Sampler` runs them in
their stated order and draws.

Every step, the scores (B, V) of the samples still being written go through these, in this
order (each is left out when off, so it costs nothing then):

1. `NgramMix`: the model's probabilities mixed with the run's n-gram counts (`ngrams.py`);
   from here on the scores are log-probabilities (all at most 0). Without it they are the
   model's logits.
2. bans: ids never to print (`<unk>`, control pieces), pieces that would break UTF-8, and the
   constraints that ban before the draw (`constraints.py`; `sample.Job` applies them: they
   depend on each sample's state);
3. `RepetitionPenalty`, then `NoRepeatNgram`: they look at what each sample wrote;
4. `Temperature`: scores / T; at 0 the likeliest token is taken and 5 is skipped;
5. `TopK`, then `TopP`: they keep the likeliest tokens;
6. one draw per sample: a uniform number from the sample's own generator against the
   cumulative probabilities. A constraint that checks the token drawn (`constraints.py`) may
   refuse it; the draw is then made again from the scores of 3 with more tokens banned.

A stage is a dataclass: its fields are its settings, checked when it is built (ValueError), so
a caller that skips `SampleConfig` cannot pass a value that would quietly do something else.
Stages that look at what was written (`reads_history`) are run per job (`penalize`); the rest
(`shape`) only on the scores, so the draws of jobs whose shaping stages have equal settings can
be made in one call (`Sampler.key`, derived from those settings). A stage is `pointwise` when
each token's new score depends on its own score alone: then banning a token after it gives the
same distribution as banning it before, which lets constraints check the drawn token instead of
masking every step. They work in float64 on whatever device the scores are on; `history` is
each sample's token ids so far (the same list object from step to step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

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


class Stage:
    """One stage of the scores: `stage(scores (B, V), history) -> scores (B, V)`."""

    reads_history = False  # looks at what each sample wrote: run per job
    pointwise = True  # a token's new score depends on its own score only

    def settings(self) -> tuple:
        """What makes two stages of a kind give the same scores (the dataclass's init fields)."""
        return (type(self).__name__, *(getattr(self, f.name) for f in fields(self) if f.init))

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        raise NotImplementedError


@dataclass(eq=False)
class NgramMix(Stage):
    """The log of p = w p_model + (1 - w) p_counts for each row given its sample's tokens so far
    (`ngrams.NGrams.mix`), from the model's logits; in float64."""

    counts: object  # ngrams.NGrams
    reads_history = True

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        model = torch.softmax(scores.double(), dim=-1).cpu().numpy()
        mixed = self.counts.mix(model, [list(ids) for ids in history])
        return torch.from_numpy(mixed).log().to(scores.device)


@dataclass
class RepetitionPenalty(Stage):
    """CTRL's penalty on the tokens among the last `window` ids: positive scores divided by it,
    negative ones multiplied. On log-probabilities (the n-gram mix) every score is negative, so
    a recent token's probability p becomes p**penalty before renormalising."""

    penalty: float
    window: int = 64
    reads_history = True

    def __post_init__(self) -> None:
        _require(
            math.isfinite(self.penalty) and self.penalty > 0,
            "the repetition penalty must be above 0",
            self.penalty,
        )
        _require(
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


@dataclass
class Temperature(Stage):
    """Divide the scores by T > 0: below 1 sharper, above 1 flatter."""

    temperature: float

    def __post_init__(self) -> None:
        _require(
            math.isfinite(self.temperature) and self.temperature > 0,
            "sampling needs T > 0",
            self.temperature,
        )

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        return scores / self.temperature


@dataclass
class TopK(Stage):
    """Keep the k largest scores of each row (and any tied with the k-th); the rest become -inf."""

    k: int
    pointwise = False

    def __post_init__(self) -> None:
        _require(isinstance(self.k, int) and self.k >= 1, "top-k must be at least 1", self.k)

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        if self.k >= scores.shape[-1]:
            return scores
        kth = torch.topk(scores, self.k, dim=-1).values[:, -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


@dataclass
class TopP(Stage):
    """Keep the fewest likeliest tokens of each row whose probabilities reach p (nucleus
    sampling)."""

    p: float
    pointwise = False

    def __post_init__(self) -> None:
        _require(0.0 < self.p <= 1.0, "top-p must be above 0 and at most 1", self.p)

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


def penalties(config: SampleConfig) -> list[Stage]:
    """Stage 3: the stages `config` turns on that look at what each sample wrote."""
    out: list[Stage] = []
    if config.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(config.repetition_penalty, config.repetition_window))
    if config.no_repeat_ngram:
        out.append(NoRepeatNgram(config.no_repeat_ngram))
    return out


def shaping(config: SampleConfig) -> list[Stage]:
    """Stages 4-5: the stages `config` turns on that shape the scores into a distribution."""
    if config.temperature == 0:
        return []
    out: list[Stage] = [Temperature(config.temperature)]
    if config.top_k is not None:
        out.append(TopK(config.top_k))
    if config.top_p < 1.0:
        out.append(TopP(config.top_p))
    return out


class Sampler:
    """The stages `config` turns on, in the order above, and the draw.

    `penalize` runs stage 3 (per job: it looks at what was written), `distribution` stages 4-5;
    `choose` draws. A token a constraint refuses afterwards is banned in the penalized scores and
    the draw is repeated from them, so stages 4-5 see the ban.
    """

    def __init__(self, config: SampleConfig):
        self.greedy = config.temperature == 0
        self.penalties = penalties(config)  # one Sampler per job: they remember its samples
        self.shaping = shaping(config)
        # samplers with the same key turn the same penalized scores into the same draws
        self.key = (self.greedy, *(stage.settings() for stage in self.shaping))
        # a ban after the draw is the same as a ban before it (see `Stage.pointwise`)
        self.pointwise = all(stage.pointwise for stage in self.shaping)

    def penalize(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        for stage in self.penalties:
            scores = stage(scores, history)
        return scores

    def distribution(self, scores: torch.Tensor, history: History = ()) -> torch.Tensor:
        """Probabilities (B, V) after stages 4-5."""
        for stage in self.shaping:
            scores = stage(scores, history)
        return torch.softmax(scores, dim=-1)

    def choose(
        self, scores: torch.Tensor, generators: Sequence[torch.Generator | None]
    ) -> torch.Tensor:
        """One token per row of penalized `scores` (B, V): the likeliest when greedy, else a
        draw from each row's generator."""
        if self.greedy:
            return scores.argmax(dim=-1)
        return draw(self.distribution(scores), generators)
