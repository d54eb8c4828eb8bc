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
3. `RepetitionPenalty`, `NoRepeatNgram`, then `Dry`: they look at what each sample wrote;
4. `Temperature`: scores / T; at 0 the likeliest token is taken and 5 is skipped;
5. `TopK`, `TopP`, `MinP`, `Typical`, then `EtaCutoff`: each keeps some of the tokens (the
   likeliest, the most typical, those above a floor) and bans the rest;
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
from dataclasses import dataclass

import torch

from authorgen.config import SampleConfig
from authorgen.penalties import penalties
from authorgen.stages import NEG_INF, History, Stage, require


@dataclass
class Temperature(Stage):
    """Divide the scores by T > 0: below 1 sharper, above 1 flatter."""

    temperature: float

    def __post_init__(self) -> None:
        require(
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
        require(isinstance(self.k, int) and self.k >= 1, "top-k must be at least 1", self.k)

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
        require(0.0 < self.p <= 1.0, "top-p must be above 0 and at most 1", self.p)

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        if self.p >= 1.0:
            return scores
        probs = torch.softmax(scores, dim=-1)
        order = torch.argsort(probs, dim=-1, descending=True, stable=True)  # (B, V)
        return _keep_first(scores, probs, order, self.p)


def _keep_first(scores, probs, order, mass: float) -> torch.Tensor:
    """`scores` (B, V) with every token banned but the first ones of `order` (B, V) whose
    probabilities `probs` reach `mass`."""
    ordered = probs.gather(-1, order)
    before = torch.cumsum(ordered, dim=-1) - ordered  # the mass of the tokens before each
    drop = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, before >= mass)
    return scores.masked_fill(drop, NEG_INF)


def _entropy(logp: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Each row's entropy (B, 1), in nats; banned tokens count nothing."""
    return -torch.where(probs > 0, probs * logp, 0.0).sum(-1, keepdim=True)


@dataclass
class MinP(Stage):
    """Keep the tokens whose probability is at least `p` times the likeliest's (min-p sampling,
    Nguyen et al. 2024): a floor that follows the model's confidence."""

    p: float
    pointwise = False

    def __post_init__(self) -> None:
        require(0.0 <= self.p <= 1.0, "min-p must be between 0 and 1", self.p)

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        floor = self.p * probs.max(dim=-1, keepdim=True).values  # (B, 1)
        return scores.masked_fill(probs < floor, NEG_INF)


@dataclass
class Typical(Stage):
    """Keep the tokens whose information (-log p) is closest to the distribution's entropy,
    the fewest whose probabilities reach `p` (locally typical sampling, Meister et al. 2023)."""

    p: float
    pointwise = False

    def __post_init__(self) -> None:
        require(0.0 < self.p <= 1.0, "typical-p must be above 0 and at most 1", self.p)

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        if self.p >= 1.0:
            return scores
        logp = torch.log_softmax(scores, dim=-1)
        probs = logp.exp()
        distance = torch.where(probs > 0, (-logp - _entropy(logp, probs)).abs(), math.inf)
        order = torch.argsort(distance, dim=-1, stable=True)  # most typical first
        return _keep_first(scores, probs, order, self.p)


@dataclass
class EtaCutoff(Stage):
    """Ban the tokens less likely than min(eta, sqrt(eta) exp(-entropy)) (eta sampling, Hewitt
    et al. 2022): a floor that falls where the model is unsure. The likeliest token stays."""

    eta: float
    pointwise = False

    def __post_init__(self) -> None:
        require(0.0 < self.eta < 1.0, "eta must be above 0 and below 1", self.eta)

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        logp = torch.log_softmax(scores, dim=-1)
        probs = logp.exp()
        entropy = _entropy(logp, probs)
        floor = torch.minimum(
            torch.full_like(entropy, self.eta), math.sqrt(self.eta) * torch.exp(-entropy)
        )
        drop = (probs < floor) & (probs < probs.max(dim=-1, keepdim=True).values)
        return scores.masked_fill(drop, NEG_INF)


def draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One token per row of `probs` (B, V) by inverse transform: the first whose cumulative
    probability exceeds a uniform draw from that row's generator. A zero-probability token is
    never taken. Returns the ids (B,)."""
    cumulative = torch.cumsum(probs, dim=-1)
    totals = cumulative[:, -1]
    total = float(totals.min()) if len(totals) else 1.0
    require(
        math.isfinite(float(totals.sum())) and total > 0 and bool((probs >= 0).all()),
        "bad probabilities",
        total,
    )
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    u = u.to(probs.device) * totals
    at = torch.searchsorted(cumulative, u[:, None], right=True)[:, 0]
    return at.clamp(max=probs.shape[-1] - 1)


def shaping(config: SampleConfig) -> list[Stage]:
    """Stages 4-5: the stages `config` turns on that shape the scores into a distribution."""
    if config.temperature == 0:
        return []
    out: list[Stage] = [Temperature(config.temperature)]
    if config.top_k is not None:
        out.append(TopK(config.top_k))
    if config.top_p < 1.0:
        out.append(TopP(config.top_p))
    if config.min_p:
        out.append(MinP(config.min_p))
    if config.typical_p < 1.0:
        out.append(Typical(config.typical_p))
    if config.eta:
        out.append(EtaCutoff(config.eta))
    return out


class Sampler:
    """The stages `config` turns on, in the order above, and the draw.

    `penalize` runs stage 3 (per job: it looks at what was written), `distribution` stages 4-5;
    `choose` draws. A token a constraint refuses afterwards is banned in the penalized scores and
    the draw is repeated from them, so stages 4-5 see the ban.
    """

    def __init__(self, config: SampleConfig, breakers: frozenset = frozenset()):
        self.greedy = config.temperature == 0
        self.penalties = penalties(config, breakers)  # one per job: they remember its samples
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
