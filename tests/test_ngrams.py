"""The training text's n-gram counts mixed into a run's predictions: Kneser-Ney against a
plain implementation by hand, distributions that sum to one, honest fitting, the files, and
train / generate / eval end to end in fresh processes."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from authorgen.config import SampleConfig
from authorgen.errors import DataError
from authorgen.ngrams import DISCOUNT, NGrams, order_for
from authorgen.run_folder import mapped_dir
from authorgen.sample import Job
from authorgen.tokenizer.char import CharTokenizer
from helpers import data_file, run_cli
from texts import FRENCH

TEXT = data_file("pg11-alices-adventures-in-wonderland.txt").read_text(encoding="utf-8")[:30_000]


def _ids(text: str, tok: CharTokenizer) -> np.ndarray:
    return np.asarray(tok.encode(text), dtype=np.int64)


def _kneser_ney_by_hand(train: list[int], order: int, vocab: int):
    """p(token | before) the plain way: strings of ids in dicts, the recursion of interpolated
    Kneser-Ney written out (raw counts at the top order, continuation counts below)."""
    grams = [
        Counter(tuple(train[i : i + n]) for i in range(len(train) - n + 1))
        for n in range(1, order + 1)
    ]
    counts = []
    for n in range(1, order + 1):
        counts.append(grams[n - 1] if n == order else Counter(g[1:] for g in grams[n]))

    def probability(before: list[int], token: int) -> tuple[float, int]:
        p, seen = 1.0 / vocab, 0
        for k in range(order):
            if k > len(before):
                break
            context = tuple(before[len(before) - k :]) if k else ()
            after = {g[-1]: c for g, c in counts[k].items() if g[:-1] == context}
            if not after:
                break
            total = sum(after.values())
            p = (max(after.get(token, 0) - DISCOUNT, 0) + DISCOUNT * len(after) * p) / total
            seen = k
        return p, seen

    return probability


@pytest.mark.parametrize("order", [1, 3, 5])
def test_the_counts_give_kneser_ney_as_written_by_hand(order):
    tok = CharTokenizer.train(TEXT + FRENCH)
    train, val = _ids(TEXT[:3000], tok), _ids(FRENCH[:200] + TEXT[3000:3400], tok)
    counts = NGrams.count(train, tok.vocab_size, order)
    by_hand = _kneser_ney_by_hand(train.tolist(), order, tok.vocab_size)
    p, seen = counts.score(val)
    for i in range(1, len(val)):
        want, want_seen = by_hand(val[max(0, i - order + 1) : i].tolist(), int(val[i]))
        assert p[i - 1] == pytest.approx(want, rel=1e-12, abs=0)
        assert seen[i - 1] == want_seen


def test_every_distribution_sums_to_one_and_agrees_with_the_scores():
    tok = CharTokenizer.train(TEXT + FRENCH)
    counts = NGrams.count(_ids(TEXT[:25_000], tok), tok.vocab_size)
    assert counts.order == 7
    val = _ids(TEXT[25_000:26_000] + FRENCH[:300], tok)  # French: contexts never seen
    p, seen = counts.score(val)
    steps = [*range(1, 12), *range(12, len(val), 7)]  # every length shorter than a context
    # a batch of histories of every length, as a server's batch has them
    dists, longest = counts.distributions([val[:i].tolist() for i in steps])
    for row, i in enumerate(steps):
        dist = dists[row]
        assert dist.sum() == pytest.approx(1.0, abs=1e-12) and (dist > 0).all()
        assert dist[val[i]] == p[i - 1] and longest[row] == seen[i - 1]
        alone, alone_seen = counts.distributions([val[:i].tolist()])
        assert np.array_equal(alone[0], dist) and alone_seen[0] == longest[row]
    assert seen.max() == counts.order - 1 and seen.min() == 0


def test_large_vocabularies_get_an_order_whose_codes_fit():
    assert order_for(66) == 7 and order_for(2000) == 5 and order_for(8000) == 4
    assert order_for(50_000) == 3
    rng = np.random.default_rng(0)
    vocab = 30_000
    ids = rng.integers(0, 50, 20_000) * 600 + rng.integers(0, 3, 20_000)  # ids up to 29,402
    counts = NGrams.count(ids, vocab)
    assert counts.order == order_for(vocab) == 4
    assert all((level.grams >= 0).all() for level in counts.levels)  # no code wrapped around
    dists, _ = counts.distributions([ids[s : s + 6].tolist() for s in (0, 500, 19_990)])
    np.testing.assert_allclose(dists.sum(axis=1), 1.0, atol=1e-9)


def test_the_reported_mix_is_measured_on_text_its_weights_were_not_fitted_to():
    tok = CharTokenizer.train(TEXT)
    train, val = _ids(TEXT[:25_000], tok), _ids(TEXT[25_000:], tok)
    counts = NGrams.count(train, tok.vocab_size)
    # a "model" that knows only how often each character comes
    freq = np.bincount(train, minlength=tok.vocab_size) + 1.0
    model_p = (freq / freq.sum())[val[1:]]
    info = counts.fit(model_p, val, len(val) - 1)
    assert info["model_val_loss"] == pytest.approx(-np.log(model_p).mean())
    assert info["val_loss"] < min(info["model_val_loss"], info["ngram_val_loss"])
    # the weights fitted to all of it score that text better than the two-fold measure says
    assert counts.nll(model_p, val) / (len(val) - 1) < info["val_loss"]
    assert ((counts.weights >= 0) & (counts.weights <= 1)).all()
    # a model that is nearly always right leaves the counts no weight where it matters
    sure = np.full(len(val) - 1, 0.999)
    counts.fit(sure, val, len(val) - 1)
    assert (counts.weights >= 0.95).all()


def test_the_files_read_back_and_damage_is_one_line(tmp_path):
    tok = CharTokenizer.train(TEXT)
    train, val = _ids(TEXT[:25_000], tok), _ids(TEXT[25_000:], tok)
    counts = NGrams.count(train, tok.vocab_size)
    counts.fit(np.full(len(val) - 1, 0.05), val, len(val) - 1)
    counts.save(tmp_path / "ngrams")
    again = NGrams.load(tmp_path / "ngrams")
    assert again.order == counts.order and (again.weights == counts.weights).all()
    assert np.array_equal(again.score(val)[0], counts.score(val)[0])
    with pytest.raises(DataError, match=r"damaged.*--no-ngrams"):
        NGrams.load(tmp_path / "elsewhere")
    (tmp_path / "ngrams" / "grams3.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"damaged.*--no-ngrams"):
        NGrams.load(tmp_path / "ngrams")


def test_a_job_draws_from_the_mix_of_the_model_and_the_counts():
    tok = CharTokenizer.train(TEXT)
    counts = NGrams.count(_ids(TEXT[:25_000], tok), tok.vocab_size)
    counts.weights = np.linspace(0.9, 0.3, counts.order)
    prompt = "Alice was "
    logits = torch.randn(2, tok.vocab_size, generator=torch.Generator().manual_seed(0))
    ordinary = [i for i in range(tok.vocab_size) if i not in tok.special_ids]
    # as fitted (share 1), and the default: the counts weigh 1.5 times as much, at most all
    for share in (1.0, SampleConfig.ngram_share, 5.0):
        job = Job(tok, prompt, SampleConfig(ngram_share=share), [1, 2], ngrams=counts)
        scores = job.scores(logits)
        for row in range(2):
            model = torch.softmax(logits[row].double(), dim=-1).numpy()
            counted, seen = counts.distributions([job.states[row].history])
            counted_weight = min(1.0, share * (1 - counts.weights[seen[0]]))
            want = (1 - counted_weight) * model + counted_weight * counted[0]
            got = scores[row].exp().numpy()
            assert seen[0] > 0
            np.testing.assert_allclose(got[ordinary], want[ordinary], rtol=1e-12)
    # --no-ngrams: the model's scores as they were
    plain = Job(tok, prompt, SampleConfig(ngrams=False), [1], ngrams=counts).scores(logits[:1])
    assert torch.equal(plain[0, ordinary], logits[0, ordinary].double())
    with pytest.raises(DataError, match="--ngrams needs"):
        Job(tok, prompt, SampleConfig(ngrams=True), [1])


# --- end to end -------------------------------------------------------------------------------

TINY = ["--model", "lstm", "--layers", "1", "--hidden", "48", "--embedding-dim", "16",
        "--context", "48", "--batch-size", "8", "--device", "cpu", "--lr", "1e-2"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    alice = data_file("pg11-alices-adventures-in-wonderland.txt")
    assert run_cli("fetch", str(alice), "--name", "alice", home=home).returncode == 0
    done = run_cli("train", "alice", *TINY, "--steps", "40", "--name", "mixed", home=home)
    assert done.returncode == 0, done.stderr
    return home, home / "checkpoints" / "mixed", done


def _generate(home, *args) -> dict:
    done = run_cli(
        "generate", "mixed", "--length", "200", "--seed", "5", "--json", *args, home=home
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_training_keeps_the_counts_and_reports_the_mixed_loss(trained):
    home, run_dir, done = trained
    config = json.loads((run_dir / "config.json").read_text())
    meta = json.loads((mapped_dir(run_dir, config["maps"], "ngrams") / "ngrams.json").read_text())
    assert meta["order"] == 7 and meta["vocab"] == config["model"]["vocab_size"]
    assert config["result"]["mixed_val_loss"] == meta["val_loss"]
    assert meta["model_val_loss"] == pytest.approx(config["best"]["val_loss"], rel=1e-5)
    assert meta["val_loss"] < meta["model_val_loss"] - 0.1  # a model of 40 steps learns little
    assert f"{meta['val_loss']:.4f} nats/char" in done.stdout + done.stderr
    evaluated = run_cli("eval", "mixed", "--samples", "0", "--json", home=home)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["mixed_val_loss"] < result["val_loss"]


def test_generate_mixes_by_default_and_no_ngrams_is_the_model_alone(trained, tmp_path):
    home, run_dir, _ = trained
    mixed, alone = _generate(home), _generate(home, "--no-ngrams")
    assert mixed["ngrams"] is True and alone["ngrams"] is False
    assert mixed["text"] != alone["text"]
    assert _generate(home)["text"] == mixed["text"]  # the same seed, the same text
    # without the counts the run writes what --no-ngrams wrote; --ngrams is then refused
    counts = mapped_dir(
        run_dir, json.loads((run_dir / "config.json").read_text())["maps"], "ngrams"
    )
    shutil.move(counts, tmp_path / "ngrams")
    try:
        assert _generate(home)["text"] == alone["text"]
        refused = run_cli("generate", "mixed", "--ngrams", home=home)
        assert refused.returncode == 4 and "Traceback" not in refused.stderr
        assert (
            refused.stderr.strip().splitlines()[-1].startswith("authorgen: error: --ngrams needs")
        )
    finally:
        shutil.move(tmp_path / "ngrams", counts)


def test_no_ngrams_trains_a_run_without_counts(trained):
    home, _, _ = trained
    args = ["train", "alice", *TINY, "--steps", "3", "--no-ngrams", "--name", "plain"]
    done = run_cli(*args, home=home)
    assert done.returncode == 0, done.stderr
    run_dir = home / "checkpoints" / "plain"
    assert not any(run_dir.glob("ngrams*"))
    assert "mixed_val_loss" not in json.loads((run_dir / "config.json").read_text())["result"]


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_the_probabilities_kept_at_the_best_evaluation_are_the_saved_weights_own(kind, tmp_path):
    from authorgen.checkpoint import load_run
    from authorgen.config import ModelConfig, TrainConfig
    from authorgen.corpus import Split
    from authorgen.losses import token_probabilities
    from authorgen.train import build_trainer

    text = data_file("pg11-alices-adventures-in-wonderland.txt").read_text()[:40_000]
    size = {"heads": 2, "context": 32} if kind == "transformer" else {"hidden": 32}
    model = ModelConfig(model=kind, embedding_dim=16, layers=1, dropout=0.1, **size)
    config = TrainConfig(
        steps=30, eval_every=10, context=32, batch_size=4, device="cpu", precision="fp32"
    )
    trainer = build_trainer(Split.from_texts(text[:30_000], text[30_000:], "t"), model, config,
                            tmp_path / "run")  # fmt: skip
    trainer.run()
    best = load_run(tmp_path / "run", torch.device("cpu")).model
    again = token_probabilities(best, trainer.data.val.ids, torch.device("cpu"))
    assert trainer.best_probabilities is not None
    assert np.array_equal(trainer.best_probabilities, again)
