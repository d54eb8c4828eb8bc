"""Evaluation and comparison: loss charts, eval, runs, compare, in fresh processes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from authorgen.charts import compare_figure
from authorgen.compare import chars_seen
from authorgen.evaluate import distinct_n
from helpers import data_file, run_cli

SMALL = ("--layers", "1", "--hidden", "32", "--embedding-dim", "16", "--device", "cpu")


def _is_png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two corpora (Alice, Pride and Prejudice) and a small run on Alice."""
    home = tmp_path_factory.mktemp("home")
    for file, name in [
        ("pg11-alices-adventures-in-wonderland.txt", "alice"),
        ("pg1342-pride-and-prejudice.txt", "austen"),
    ]:
        assert run_cli("fetch", str(data_file(file)), "--name", name, home=home).returncode == 0
    out = run_cli("train", "alice", *SMALL, "--steps", "40", "--eval-every", "10", home=home)
    assert out.returncode == 0, out.stderr
    return home, home / "checkpoints" / "alice-lstm"


@pytest.mark.slow
def test_every_run_draws_its_loss_chart(evaluated):
    _, run_dir = evaluated
    assert _is_png(run_dir / "loss.png") == (800, 450)
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 4  # the chart is drawn after the first and when training ends


@pytest.mark.slow
def test_eval_reports_loss_originality_distinct_and_style(evaluated):
    home, run_dir = evaluated
    out = run_cli("eval", "alice-lstm", "--samples", "2", "--length", "300", "--json", home=home)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {"run", "val_loss", "val_bpc", "originality", "style", "perplexity"} <= set(result)
    config = json.loads((run_dir / "config.json").read_text())
    # the same held-out text as training's last evaluation, the same weights (best = last here)
    assert result["val_loss"] == pytest.approx(config["best"]["val_loss"], abs=1e-4)
    assert result["val_bpc"] == pytest.approx(result["val_loss"] / 0.6931471805599453, abs=1e-4)
    assert set(result["style"]["delta"]) == {"alice", "austen"}
    assert result["style"]["author"] == "alice" and result["style"]["summary"]
    assert result["originality"]["longest_copy_chars"] >= 1
    assert 0 < result["distinct"]["distinct_1"] <= 1
    assert "style:" in out.stderr and "bpc" in out.stderr


@pytest.mark.slow
def test_eval_measures_realism_beside_the_longest_copy_and_keeps_it_in_the_run(evaluated):
    home, run_dir = evaluated
    args = ("eval", "alice-lstm", "--samples", "16", "--length", "300", "--json")
    out = run_cli(*args, home=home)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    realism = result["realism"]
    assert realism["texts"] == [16, 16] and realism["chars"] == 300
    assert realism["auc"] > 0.7 and realism["se"] > 0  # 40 steps of training: told apart
    assert realism["floor"]["texts"] == [16, 16] and realism["floor"]["auc"] is not None
    assert realism["training_pages"]["texts"] == [16, 16]  # the author's own other pages
    assert realism["giveaways"]["samples"] and realism["giveaways"]["real"]
    copy = result["originality"]["longest_copy_chars"]
    assert f"AUC {realism['auc']:.2f}" in out.stderr and f"longest copy {copy}" in out.stderr
    kept = json.loads((run_dir / "eval.json").read_text())
    assert kept["realism"]["auc"] == realism["auc"] and kept["longest_copy_chars"] == copy
    assert kept["sampled"]["temperature"] == result["temperature"]
    listed = json.loads(run_cli("runs", "--json", home=home).stdout)
    row = next(r for r in listed if r["run"] == "alice-lstm")
    assert row["realism"] == realism["auc"] and row["longest_copy_chars"] == copy
    again = run_cli(*args, home=home)
    assert json.loads(again.stdout)["realism"] == realism  # the same seeds: the same score


@pytest.mark.slow
def test_eval_sweeps_temperatures_and_reads_other_texts(evaluated, tmp_path):
    home, _ = evaluated
    out = run_cli(
        "eval", "alice-lstm", "--samples", "1", "--length", "200",
        "--sweep-temperature", "0.5,1.1", "--json", home=home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    sweep = json.loads(out.stdout)["sweep"]
    assert [row["temperature"] for row in sweep] == [0.5, 1.1]
    assert all({"style", "originality", "distinct"} <= set(row) for row in sweep)
    assert "temperature" in out.stderr and "distinct-2" in out.stderr
    text = tmp_path / "other.txt"
    text.write_text("Alice was beginning to get very tired of sitting by her sister.\n" * 40)
    out = run_cli("eval", "alice-lstm", "--text", str(text), "--samples", "0", home=home)
    assert out.returncode == 0, out.stderr
    assert "on the text of other.txt" in out.stderr
    other = run_cli(
        "eval", "alice-lstm", "--corpus", "austen", "--samples", "0", "--json", home=home
    )
    assert json.loads(other.stdout)["heldout"] == "all of corpus austen"
    bad = run_cli("eval", "alice-lstm", "--sweep-temperature", "warm", home=home)
    assert bad.returncode == 2 and "--sweep-temperature" in bad.stderr and not bad.stdout


@pytest.mark.slow
def test_invented_words_in_generate_and_eval_with_and_without_the_rule(evaluated):
    home, _ = evaluated
    common = ["--length", "300", "-n", "3", "--seed", "5", "--json"]
    ruled = run_cli("generate", "alice-lstm", *common, "--known-words", home=home)
    free = run_cli("generate", "alice-lstm", *common, "--any-words", home=home)
    assert ruled.returncode == 0 and free.returncode == 0, ruled.stderr + free.stderr
    ruled_rows = [json.loads(line) for line in ruled.stdout.splitlines()]
    free_rows = [json.loads(line) for line in free.stdout.splitlines()]
    assert [r["known_words"] for r in ruled_rows + free_rows] == [True] * 3 + [False] * 3
    assert sum(r["originality"]["invented"] for r in free_rows) > 5  # 40 steps: made-up words
    assert all(r["originality"]["invented"] == 0 for r in ruled_rows)
    assert all(r["originality"]["words"] > 20 for r in ruled_rows)
    assert "words not in the training text" in free.stderr
    out = run_cli(
        "eval", "alice-lstm", "--samples", "2", "--length", "200", "--json", "--known-words",
        home=home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["known_words"] is True and result["invented_words"] == 0
    assert 0 < result["heldout_invented_words"] < 0.2  # Alice's last chapters: names, rare words
    assert "invented words: 0.0%" in out.stderr


@pytest.mark.slow
def test_runs_lists_and_shows_a_run(evaluated):
    home, run_dir = evaluated
    out = run_cli("runs", "--json", home=home)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["run"] == "alice-lstm" and row["model"] == "lstm 1x32" and row["corpus"] == "alice"
    assert row["tokenizer"] == "char" and row["steps"] == 40 and row["best_val_bpc"] > 0
    shown = run_cli("runs", "show", "alice-lstm", "--json", home=home)
    assert json.loads(shown.stdout)["chart"] == str(run_dir / "loss.png")
    table = run_cli("runs", home=home)
    assert "alice-lstm" in table.stderr and table.stdout == ""


@pytest.mark.slow
def test_compare_trains_every_combination_and_draws_the_chart(evaluated):
    home, _ = evaluated
    args = ("compare", "alice", "--models", "lstm,gru", "--tokenizers", "char,bpe", *SMALL[-2:])
    out = run_cli(*args, "--steps", "10", "--samples", "1", "--length", "100", "--json", home=home)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {(r["model"], r["tokenizer"]) for r in rows} == {
        ("lstm", "char"), ("lstm", "bpe"), ("gru", "char"), ("gru", "bpe")
    }  # fmt: skip
    assert [r["val_bpc"] for r in rows] == sorted(r["val_bpc"] for r in rows)
    for r in rows:
        assert {"run", "model", "tokenizer", "val_bpc", "params", "tokens_per_s"} <= set(r)
        assert 0 <= r["invented_words"] <= 1  # 10 steps: mostly made-up words
        assert r["mixed_val_bpc"] < r["val_bpc"]  # 10 steps: the counts know far more
        assert (home / "checkpoints" / r["run"] / "model.safetensors").exists()
    assert _is_png(home / "checkpoints" / "alice-compare.png")[0] > 0
    again = run_cli(*args, "--steps", "10", "--samples", "0", home=home)
    assert again.returncode == 2 and "--force" in again.stderr
    bad = run_cli("compare", "alice", "--models", "lstm,cnn", home=home)
    assert bad.returncode == 2 and "--models" in bad.stderr


def test_the_compare_chart_plots_characters_seen_whatever_the_tokenizer():
    rows = [{"tokens": 100, "val_bpc": 3.0}, {"tokens": 200, "val_bpc": 2.5}]
    words = chars_seen(rows, tokens_per_char=0.25)  # a word is four characters here
    assert words == [(400.0, 3.0), (800.0, 2.5)]
    fig = compare_figure([("lstm word", words), ("lstm char", chars_seen(rows, 1.0))], "t")
    curves = fig.axes[0]
    assert curves.get_xlabel() == "characters seen"
    assert [list(line.get_xdata()) for line in curves.lines] == [[400.0, 800.0], [100.0, 200.0]]
    assert [list(line.get_ydata()) for line in curves.lines] == [[3.0, 2.5], [3.0, 2.5]]


def test_distinct_n_by_hand():
    assert distinct_n(["a b a b", "a c"], 1) == pytest.approx(3 / 6)
    assert distinct_n(["a b a b", "a c"], 2) == pytest.approx(3 / 4)  # ab ba ab | ac
    assert distinct_n(["one"], 2) is None
