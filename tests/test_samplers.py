"""The samplers that keep some tokens (min-p, typical, eta) and DRY, each against a brute-force
reference written here on small distributions, alone and in their order with the others; and
generation with them: batches, known words, max copy."""

from __future__ import annotations

import math
import random

import pytest
import torch

from authorgen.config import SampleConfig
from authorgen.corpus import Split
from authorgen.errors import UsageError
from authorgen.originality import Index, build_index
from authorgen.penalties import Dry, repeat_lengths
from authorgen.sample import Generation
from authorgen.samplers import EtaCutoff, MinP, Sampler, Typical
from authorgen.tokenizer.char import CharTokenizer
from helpers import tiny_model
from texts import ENGLISH

# --- references, one token at a time --------------------------------------------------------


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) if s != -math.inf else 0.0 for s in scores]
    return [e / sum(exps) for e in exps]


def _entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


def ref_min_p(scores, p):
    probs = _softmax(scores)
    return [s if q >= p * max(probs) else -math.inf for s, q in zip(scores, probs, strict=True)]


def ref_typical(scores, mass):
    probs = _softmax(scores)
    h = _entropy(probs)
    order = sorted(
        range(len(scores)), key=lambda i: (abs(-math.log(probs[i]) - h) if probs[i] else 1e300, i)
    )
    return _first_reaching(scores, probs, order, mass)


def _first_reaching(scores, probs, order, mass):
    """`scores` with only the first tokens of `order` kept until their probabilities reach
    `mass`."""
    kept, total = set(), 0.0
    for i in order:
        if total >= mass:
            break
        kept.add(i)
        total += probs[i]
    return [s if i in kept else -math.inf for i, s in enumerate(scores)]


def ref_eta(scores, eta):
    probs = _softmax(scores)
    floor = min(eta, math.sqrt(eta) * math.exp(-_entropy(probs)))
    return [
        s if q >= floor or q == max(probs) else -math.inf
        for s, q in zip(scores, probs, strict=True)
    ]


def ref_top_k(scores, k):
    kth = sorted(scores, reverse=True)[k - 1]
    return [s if s >= kth else -math.inf for s in scores]


def ref_top_p(scores, mass):
    probs = _softmax(scores)
    order = sorted(range(len(scores)), key=lambda i: (-probs[i], i))
    return _first_reaching(scores, probs, order, mass)


def _rows(seed: int, rows: int = 4, size: int = 9) -> list[list[float]]:
    rng = random.Random(seed)
    out = [[rng.gauss(0, 2) for _ in range(size)] for _ in range(rows)]
    out[0][3] = out[0][5]  # a tie
    out[1][0] = -math.inf  # a token banned before
    return out


def _kept(tensor_row) -> list[bool]:
    return [math.isfinite(v) for v in tensor_row]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("stage", "reference", "values"),
    [
        (MinP, ref_min_p, [0.0, 0.05, 0.2, 0.5, 1.0]),
        (Typical, ref_typical, [0.2, 0.5, 0.9, 0.99]),
        (EtaCutoff, ref_eta, [0.001, 0.02, 0.1, 0.3]),
    ],
)
def test_each_new_sampler_keeps_what_the_reference_keeps(seed, stage, reference, values):
    rows = _rows(seed)
    scores = torch.tensor(rows, dtype=torch.float64)
    for value in values:
        out = stage(value)(scores, ())
        for row, got in zip(rows, out.tolist(), strict=True):
            assert _kept(got) == _kept(reference(row, value)), (stage, value, row)
            assert [g for g in got if math.isfinite(g)] == [  # the kept scores are untouched
                r for r, k in zip(row, _kept(reference(row, value)), strict=True) if k
            ]
        assert out.isfinite().any(-1).all()  # every row keeps at least one token


@pytest.mark.parametrize("seed", range(6))
def test_the_stages_run_in_their_order_and_the_draw_renormalises_what_is_kept(seed):
    options = {"temperature": 0.7, "top_k": 6, "top_p": 0.97, "min_p": 0.02,
               "typical_p": 0.95, "eta": 0.01}  # fmt: skip
    rows = _rows(seed)
    got = Sampler(SampleConfig(**options)).distribution(torch.tensor(rows, dtype=torch.float64))
    for row, probs in zip(rows, got.tolist(), strict=True):
        scores = [s / options["temperature"] for s in row]
        scores = ref_top_k(scores, options["top_k"])
        scores = ref_top_p(scores, options["top_p"])
        scores = ref_min_p(scores, options["min_p"])
        scores = ref_typical(scores, options["typical_p"])
        scores = ref_eta(scores, options["eta"])
        assert probs == pytest.approx(_softmax(scores), abs=1e-12)
        assert math.isclose(sum(probs), 1.0)


def test_jobs_whose_samplers_differ_do_not_share_a_draw():
    a = Sampler(SampleConfig(min_p=0.1))
    assert a.key == Sampler(SampleConfig(min_p=0.1)).key
    for other in ({"min_p": 0.2}, {"typical_p": 0.9}, {"eta": 0.01}, {}):
        assert a.key != Sampler(SampleConfig(**other)).key
    assert not a.pointwise and Sampler(SampleConfig()).pointwise


# --- DRY ------------------------------------------------------------------------------------


def ref_repeat_lengths(ids, breakers):
    """For each token that has followed an earlier copy of the text's last token: the longest
    run of tokens before it that equals the run ending the text, with no breaker in either."""
    n, out = len(ids), {}
    if n < 2 or ids[-1] in breakers:
        return out
    for j in range(1, n):  # ids[j] follows the earlier stretch ending at j - 1
        k = 0
        while (
            k < j
            and ids[j - 1 - k] == ids[n - 1 - k]
            and ids[n - 1 - k] not in breakers
            and ids[j - 1 - k] not in breakers
        ):
            k += 1
        if k and ids[j] not in breakers:
            out[ids[j]] = max(out.get(ids[j], 0), k)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_repeat_lengths_are_the_brute_force_ones(seed):
    rng = random.Random(seed)
    size = rng.choice([3, 4, 6])
    ids = [rng.randrange(size) for _ in range(rng.randint(1, 60))]
    if seed % 3 == 0:  # a periodic stretch: long repeats that overlap themselves
        ids += ids[-5:] * 4
    breakers = frozenset({0}) if seed % 2 else frozenset()
    assert repeat_lengths(ids, breakers) == ref_repeat_lengths(ids, breakers)


def test_dry_penalises_extending_a_repeat_by_its_length():
    ids = [1, 2, 3, 4, 9, 1, 2, 3]  # "1 2 3" again: 4 would repeat three tokens
    scores = torch.zeros(1, 10, dtype=torch.float64)
    out = Dry(0.8, allowed=2, base=1.75)(scores, [ids])[0]
    assert out[4].item() == pytest.approx(-0.8 * 1.75 ** (3 - 2))
    assert out[[i for i in range(10) if i != 4]].abs().sum() == 0  # nothing else moves
    assert Dry(0.8, allowed=4)(scores, [ids]).abs().sum() == 0  # 3 tokens are allowed there
    assert Dry(0.8, allowed=2, breakers=frozenset({2}))(scores, [ids]).abs().sum() == 0
    assert scores.abs().sum() == 0  # the input is not changed
    with pytest.raises(ValueError):
        Dry(0.0)
    with pytest.raises(ValueError):
        Dry(1.0, base=1.0)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"min_p": 1.5}, "--min-p"),
        ({"typical_p": 0.0}, "--typical-p"),
        ({"eta": -0.1}, "--eta"),
        ({"eta": float("nan")}, "--eta"),
        ({"dry": -1.0}, "--dry"),
        ({"dry_allowed": 0}, "--dry-allowed"),
    ],
)
def test_bad_values_of_the_new_samplers_name_their_option(options, flag):
    with pytest.raises(UsageError, match=flag):
        SampleConfig(**options)


# --- generating with them -------------------------------------------------------------------

NEW = {"min_p": 0.05, "typical_p": 0.95, "eta": 0.005, "dry": 0.8, "dry_allowed": 4}


def _tiny(model: str = "lstm"):
    return tiny_model(model, ENGLISH, context=16, layers=1)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_a_batch_with_the_new_samplers_equals_each_sample_alone(kind):
    model, tok = _tiny(kind)
    config = SampleConfig(temperature=1.2, length=150, n=4, **NEW)

    def texts(seeds):
        return [s.text for _, _, s in Generation(model, tok, "The ", config, seeds) if s]

    together = texts([3, 4, 5, 6])
    assert together == [texts([seed])[0] for seed in (3, 4, 5, 6)]
    assert len(set(together)) == 4


def test_dry_makes_a_looping_model_stop_looping():
    tok = CharTokenizer.train("abcd ")
    model = _Looping(tok.vocab_size, [tok.encode(c)[0] for c in "abcd"])
    greedy = SampleConfig(temperature=0.0, length=60)
    looped = next(s for _, _, s in Generation(model, tok, "a", greedy, [0]) if s).text
    assert looped.startswith("bcdabcdabcd")
    config = SampleConfig(temperature=0.0, length=60, dry=2.0, dry_allowed=4)
    broken = next(s for _, _, s in Generation(model, tok, "a", config, [0]) if s).text
    longest = max(
        k for k in range(1, len(broken)) if any(broken.count(broken[i : i + k]) > 1
                                               for i in range(len(broken) - k))
    )  # fmt: skip
    assert "abcdabcdabcd" not in "a" + broken and longest < 12


class _Looping(torch.nn.Module):
    """A model that always prefers the letter after the last one: a, b, c, d, a, ... (others
    a little less likely), as a model stuck in a loop does."""

    stateful = False

    def __init__(self, vocab: int, cycle: list[int]):
        super().__init__()
        self.vocab, self.cycle = vocab, cycle

    def _next(self, idx):
        logits = torch.zeros(*idx.shape, self.vocab)
        for i, row in enumerate(idx.tolist()):
            for t, token in enumerate(row):
                if token in self.cycle:
                    logits[i, t, self.cycle[(self.cycle.index(token) + 1) % 4]] = 3.0
        return logits

    def forward(self, idx, state=None, last=False):
        logits = self._next(idx)
        return (logits[:, -1:] if last else logits), None

    def prefill(self, idx, batch=None):
        return self._next(idx)[:, -1], None

    @staticmethod
    def join(batch, row, copies=1):
        return None

    @staticmethod
    def keep(batch, rows):
        return None


def test_the_new_samplers_keep_known_words_and_max_copy(tmp_path):
    model, tok = _tiny()
    build_index(tmp_path / "ix", Split.from_texts(ENGLISH, "", "t").sources())
    index = Index(tmp_path / "ix")
    config = SampleConfig(temperature=1.3, length=300, known_words=True, max_copy=20, **NEW)
    samples = [s for _, _, s in Generation(model, tok, "", config, range(6), "cpu", index) if s]
    for s in samples:
        assert s.originality["invented"] == 0 and s.originality["longest_copy_chars"] <= 20
        assert s.stopped in {"length", "max_copy", "known_words"}
    assert sum(s.stopped == "length" for s in samples) >= 3
