"""The training text's n-gram counts, mixed with a run's predictions.

A run's model and an n-gram model of the text it trained on are wrong in different places: in
`make bench` a 5-minute LSTM on Tiny Shakespeare reaches 1.505 nats/char alone and 1.425 with
these counts mixed in (benchmarks/README.md, "Measured again"). So a run keeps the counts, and
its next-token probabilities become

    p(x) = w[s] * p_model(x) + (1 - w[s]) * p_ngram(x)

where s is the longest context (0 .. order - 1 tokens) the training text has seen before the
next token: the counts deserve more weight where they have seen more. p_ngram is interpolated
Kneser-Ney over token ids: at the top order the counts of each (order)-gram, below it the
number of different tokens seen before each shorter gram (continuation counts), one discount.

The weights are fitted on the validation text at the end of training; the loss reported for
the mix is measured two-fold (weights fitted on one half of the validation text, scored on the
other, both ways), so it is never measured on the text its weights came from. The counts never
see the validation text.

Files (in the run's `ngrams-TAG/`, see `run_folder.py`): `ngrams.json` (order, vocabulary,
discount, weights, losses) and per level k (a context of k tokens) `grams{k}.npy`, the sorted
codes of the (k + 1)-grams (the ids as digits of base `vocab`), and `counts{k}.npy`. What each
context totals is recomputed on load, in one pass over the sorted codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from authorgen.errors import DataError
from authorgen.files import atomic_write_json, staged_dir

META = "ngrams.json"
DISCOUNT = 0.75
# mixing one 5-minute run (1.498 alone) with 6-, 7- and 8-grams of characters gave 1.428, 1.421
# and 1.417 on Tiny Shakespeare (benchmarks/README.md): 8 gains 0.004 for 1.4 times the files
MAX_ORDER = 7
MAX_TOKENS = 20_000_000  # counting more takes minutes and gigabytes: such runs keep none
WEIGHT_GRID = np.linspace(0.0, 1.0, 101)
MIN_TOKENS_PER_WEIGHT = 500  # validation tokens a context length needs for a weight of its own


def order_for(vocab: int) -> int:
    """The order the counts have for a vocabulary: up to MAX_ORDER, as far as an n-gram's code
    (n digits of base `vocab`) fits in 62 bits."""
    return max(1, min(MAX_ORDER, int(62 / math.log2(max(vocab, 2)))))


@dataclass
class Level:
    """The (k + 1)-grams of one level and what each k-token context totals."""

    grams: np.ndarray  # (G,) int64, sorted: context * vocab + token
    counts: np.ndarray  # (G,) the top level's occurrences, else continuation counts
    contexts: np.ndarray = field(init=False)  # (C,) int64, sorted
    totals: np.ndarray = field(init=False)  # (C,) sum of the counts after each context
    types: np.ndarray = field(init=False)  # (C,) different tokens seen after it
    starts: np.ndarray = field(init=False)  # (C + 1,) each context's grams: starts[i]..starts[i+1]
    # for a step's distribution, ready made: each gram's token and discounted count, and each
    # context's 1 / total and the share it leaves to the shorter context
    tokens: np.ndarray = field(init=False)
    discounted: np.ndarray = field(init=False)
    inverse: np.ndarray = field(init=False)
    backoff: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.grams = np.asarray(self.grams, dtype=np.int64)
        self.counts = np.asarray(self.counts)

    def index(self, vocab: int) -> None:
        context = self.grams // vocab  # sorted, since the grams are
        first = np.flatnonzero(np.r_[True, context[1:] != context[:-1]])
        self.contexts = context[first]
        self.starts = np.r_[first, len(self.grams)]
        self.types = np.diff(self.starts)
        self.totals = np.add.reduceat(self.counts.astype(np.int64), first) if len(first) else first
        self.tokens = self.grams % vocab
        self.discounted = np.maximum(self.counts - DISCOUNT, 0.0)
        self.inverse = 1.0 / np.maximum(self.totals, 1)
        self.backoff = DISCOUNT * self.types * self.inverse


@dataclass
class NGrams:
    """Kneser-Ney n-gram counts of a run's training tokens, and the mixing weights."""

    vocab: int
    levels: list[Level]
    weights: np.ndarray | None = None  # (order,) the model's weight per longest context seen
    info: dict = field(default_factory=dict)  # losses measured when fitted

    @property
    def order(self) -> int:
        return len(self.levels)

    @classmethod
    def count(cls, ids: np.ndarray, vocab: int, order: int | None = None) -> NGrams:
        """The counts of `ids`, the training text's token ids."""
        order = order or order_for(vocab)
        ids = np.asarray(ids, dtype=np.int64)
        distinct = []  # per n: the sorted distinct n-gram codes and their occurrences
        codes = ids
        for n in range(1, order + 1):
            if n > 1:
                codes = codes[:-1] * vocab + ids[n - 1 :]
            distinct.append(np.unique(codes, return_counts=True))
        levels = []
        for n in range(1, order + 1):
            if n == order:
                grams, counts = distinct[n - 1]
            else:  # how many different tokens come before each n-gram: drop the first digit
                grams, counts = np.unique(distinct[n][0] % vocab**n, return_counts=True)
            levels.append(Level(grams, counts.astype(np.int32)))
        ngrams = cls(vocab, levels)
        for level in levels:
            level.index(vocab)
        return ngrams

    # -- the probabilities -------------------------------------------------------------------

    def score(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each token of `ids` after the first: its probability given the tokens before it
        (up to order - 1 of them), and the longest context the counts have seen (tokens)."""
        ids = np.asarray(ids, dtype=np.int64)
        n = len(ids) - 1
        p = np.full(n, 1.0 / self.vocab)
        seen = np.zeros(n, dtype=np.int64)
        alive = np.ones(n, dtype=bool)  # every shorter context has been seen
        context = np.zeros(n, dtype=np.int64)
        for k, level in enumerate(self.levels):
            if k:  # the k tokens before each target: append one more digit at the front
                context = context + np.r_[np.zeros(k - 1, np.int64), ids[: n - k + 1]][:n] * (
                    self.vocab ** (k - 1)
                )
                alive[: k - 1] = False  # too close to the start for k tokens of context
            p, hit = self._update(level, context, ids[1:], p, alive)
            alive &= hit
            seen[alive] = k
        return p, seen

    def _update(self, level: Level, context, token, p, alive) -> tuple[np.ndarray, np.ndarray]:
        """One level of Kneser-Ney for each target `token` after its `context`: the shorter
        contexts' `p` scaled by what this context leaves them, plus its own discounted count
        (the same arithmetic as `distributions`, so the two agree to the last bit)."""
        at = np.minimum(level.contexts.searchsorted(context), len(level.contexts) - 1)
        hit = alive & (level.contexts[at] == context)
        gram = context * self.vocab + token
        g = np.minimum(level.grams.searchsorted(gram), len(level.grams) - 1)
        own = np.where(level.grams[g] == gram, level.discounted[g], 0.0) * level.inverse[at]
        return np.where(hit, p * level.backoff[at] + own, p), hit

    def distributions(self, histories: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """p(every token | the last tokens of each history) (B, vocab), and the longest context
        each has seen (B,): one pass per level for the whole batch (a lone history takes the
        scalar way, five times faster for one)."""
        if len(histories) == 1:
            p, seen = self._distribution(histories[0])
            return p[None], np.array([seen])
        rows, vocab = len(histories), self.vocab
        p = np.full((rows, vocab), 1.0 / vocab)
        seen = np.zeros(rows, dtype=np.int64)
        width = self.order - 1  # the last tokens each history may need, right-aligned
        tail = np.zeros((rows, max(width, 1)), dtype=np.int64)
        lengths = np.array([len(h) for h in histories])
        for row, history in enumerate(histories):
            last = history[max(0, len(history) - width) :] if width else []
            tail[row, width - len(last) :] = last
        alive = np.ones(rows, dtype=bool)
        context = np.zeros(rows, dtype=np.int64)
        for k, level in enumerate(self.levels):
            if k:
                context += tail[:, width - k] * vocab ** (k - 1)
                alive &= lengths >= k
            at = np.minimum(level.contexts.searchsorted(context), len(level.contexts) - 1)
            alive &= level.contexts[at] == context
            found = np.flatnonzero(alive)
            if not len(found):
                break
            at = at[found]
            lo, counts = level.starts[at], level.types[at]
            # the grams of every found row's context, one after another
            grams = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            owner = np.repeat(found, counts)
            p[found] *= level.backoff[at][:, None]
            p[owner, level.tokens[grams]] += level.discounted[grams] * np.repeat(
                level.inverse[at], counts
            )
            seen[found] = k
        return p, seen

    def _distribution(self, history: list[int]) -> tuple[np.ndarray, int]:
        """`distributions` for one history, with Python numbers where it can."""
        p = np.full(self.vocab, 1.0 / self.vocab)
        seen, context = 0, 0
        for k, level in enumerate(self.levels):
            if k:
                if k > len(history):
                    break
                context += history[-k] * self.vocab ** (k - 1)
            at = level.contexts.searchsorted(context)
            if at == len(level.contexts) or level.contexts[at] != context:
                break
            lo, hi = level.starts[at], level.starts[at + 1]
            p *= level.backoff[at]
            p[level.tokens[lo:hi]] += level.discounted[lo:hi] * level.inverse[at]
            seen = k
        return p, seen

    def mix(self, model: np.ndarray, histories: list[list[int]], share: float = 1.0) -> np.ndarray:
        """The mixed probabilities of each row's next token, from the model's (B, vocab); with
        `share`, the counts get that many times their fitted weight (at most all of it)."""
        counted, seen = self.distributions(histories)
        w = self.weights[seen][:, None]
        if share != 1.0:
            w = 1 - np.minimum(1.0, share * (1 - w))
        return w * model + (1 - w) * counted

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, model_p: np.ndarray, ids: np.ndarray, chars: int) -> dict:
        """Fit the weights to the validation tokens `ids` given the model's probability of
        each of them after the first (`model_p`); returns the losses in nats per character of
        the `chars` characters: the model alone, the counts alone, and the mix measured
        two-fold."""
        counted, seen = self.score(ids)
        half = len(counted) // 2
        halves = (slice(0, half), slice(half, None))
        mixed = 0.0
        for fit_on, score_on in (halves, halves[::-1]):
            w = _best_weights(model_p[fit_on], counted[fit_on], seen[fit_on], self.order)
            mixed += _nll(w[seen[score_on]], model_p[score_on], counted[score_on])
        self.weights = _best_weights(model_p, counted, seen, self.order)
        self.info = {
            "model_val_loss": float(-np.log(model_p).sum() / chars),
            "ngram_val_loss": float(-np.log(counted).sum() / chars),
            "val_loss": float(mixed / chars),
            "weights": [round(float(w), 2) for w in self.weights],
        }
        return self.info

    def nll(self, model_p: np.ndarray, ids: np.ndarray) -> float:
        """The summed negative log-likelihood (nats) of the tokens of `ids` after the first
        under the mix with the fitted weights, given the model's probability of each."""
        counted, seen = self.score(ids)
        return _nll(self.weights[seen], model_p, counted)

    # -- files -------------------------------------------------------------------------------

    def save(self, dest: Path) -> None:
        """Write the counts into the folder `dest` (a run's, `run_folder.mapped_dir`)."""
        with staged_dir(Path(dest)) as folder:
            for k, level in enumerate(self.levels):
                np.save(folder / f"grams{k}.npy", level.grams)
                np.save(folder / f"counts{k}.npy", level.counts)
            meta = {"order": self.order, "vocab": self.vocab, "discount": DISCOUNT, **self.info}
            atomic_write_json(folder / META, meta)

    @classmethod
    def load(cls, folder: Path) -> NGrams:
        """The counts `save` wrote into `folder`, memory-mapped.

        Raises:
            DataError: when they are damaged.
        """
        try:
            meta = json.loads((folder / META).read_text())
            levels = [
                Level(
                    np.load(folder / f"grams{k}.npy", mmap_mode="r"),
                    np.load(folder / f"counts{k}.npy", mmap_mode="r"),
                )
                for k in range(meta["order"])
            ]
            for level in levels:
                level.index(meta["vocab"])
            weights = np.asarray(meta["weights"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{folder} is damaged ({exc}); generate with --no-ngrams, or train the run again"
            ) from None
        return cls(meta["vocab"], levels, weights, meta)


def _nll(weights, model_p, counted) -> float:
    """Summed -log of the mix, with the model's weight per token."""
    return float(-np.log(weights * model_p + (1 - weights) * counted).sum())


def _best_weights(model_p, counted, seen, order: int) -> np.ndarray:
    """The model's weight per longest context seen (a grid of 0 .. 1 by 0.01) that gives the
    lowest mixed loss; one weight for all tokens where a context length has too few tokens to
    fit its own."""
    weights = np.full(order, _best_weight(model_p, counted))
    for k in range(order):
        mine = seen == k
        if mine.sum() >= MIN_TOKENS_PER_WEIGHT:
            weights[k] = _best_weight(model_p[mine], counted[mine])
    return weights


def _best_weight(model_p, counted) -> float:
    losses = -np.log(WEIGHT_GRID * model_p[:, None] + (1 - WEIGHT_GRID) * counted[:, None]).sum(0)
    return float(WEIGHT_GRID[int(np.argmin(losses))])
