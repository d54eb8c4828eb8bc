"""Realism: the classifier two-sample test between samples and the author's held-out pages."""

from __future__ import annotations

import random

import pytest

from authorgen.clean import clean_text
from authorgen.cli.console import _realism_text
from authorgen.corpus import Split
from authorgen.originality import Index, build_index
from authorgen.realism import cut, excerpts, hanley_mcneil, normalise, realism, two_sample
from helpers import data_file


@pytest.fixture(scope="module")
def austen() -> str:
    return clean_text(data_file("pg1342-pride-and-prejudice.txt").read_bytes())[0]


def _shuffled(text: str, rng: random.Random) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


def test_texts_are_cut_alike_at_word_boundaries():
    assert cut("  The  old\nhouse \t stood  ", 100) == "The old house stood"
    assert cut("The old house stood there", 14) == "The old house"  # not "The old house "
    pieces = excerpts("one two three four five six seven eight nine ten " * 40, 10, 30)
    assert len(pieces) == 10
    assert all(len(p) <= 30 and p == p.strip() and "  " not in p for p in pieces)
    assert all(p.split()[0] in "one two three four five six seven eight nine ten" for p in pieces)


def test_held_out_pages_against_held_out_pages_are_near_one_half(austen):
    real = excerpts(austen, 128, 1000)
    assert len(real) == 128
    result = two_sample(real[0::2], real[1::2], seed=0)
    assert result["texts"] == [64, 64]
    assert abs(result["auc"] - 0.5) <= 2 * result["se"], result
    assert result["se"] <= 0.055  # 64 texts a side: about 0.05 near one half


def test_shuffled_words_are_told_from_real_pages(austen):
    real = excerpts(austen, 64, 1000)
    rng = random.Random(0)
    fake = [_shuffled(text, rng) for text in real[0::2]]
    result = two_sample(fake, real[1::2], seed=0)
    assert result["auc"] >= 0.95 and result["told_apart"] >= 0.85, result


def test_the_score_is_the_same_for_a_seed(austen):
    real = excerpts(austen, 48, 600)
    first = two_sample(real[0::2], real[1::2], seed=7)
    assert two_sample(real[0::2], real[1::2], seed=7) == first


def test_too_few_texts_give_no_auc():
    assert two_sample(["a b"] * 3, ["c d"] * 3)["auc"] is None


def test_the_standard_error_is_hanley_and_mcneils():
    # by hand: Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A),
    # SE^2 = (A (1 - A) + (n1 - 1)(Q1 - A^2) + (n2 - 1)(Q2 - A^2)) / (n1 n2)
    assert hanley_mcneil(0.8, 50, 50) == pytest.approx((4.95111 / 2500) ** 0.5, rel=1e-4)
    assert hanley_mcneil(0.5, 64, 64) == pytest.approx((10.75 / 4096) ** 0.5, rel=1e-9)
    assert hanley_mcneil(1.0, 30, 30) == 0.0


def test_a_copy_of_the_corpus_passes_the_test_and_the_longest_copy_beside_it_says_so(
    austen, tmp_path
):
    blocks = [austen[i : i + 4000] for i in range(0, len(austen), 4000)]
    training = normalise("".join(blocks[0::2]))  # as the copies will be cut: single spaces
    heldout = "".join(blocks[1::2])  # other pages of the same book
    build_index(tmp_path / "ix", Split.from_texts(training, heldout, "t").sources())
    index = Index(tmp_path / "ix")
    copies = excerpts(training, 32, 800)  # "samples" that recite the training text
    judged = realism(copies, heldout, 800, seed=0, training=training)
    # a copy passes for the author's pages, as their own other pages do (pages near one another
    # share a scene, so the spread is wider than the standard error: 3 of them)
    assert judged["auc"] < 0.5 + 3 * judged["se"]
    assert judged["training_pages"]["auc"] < 0.5 + 3 * judged["training_pages"]["se"]
    longest = max(index.report(text)["longest_copy_chars"] for text in copies)
    assert longest >= 700  # ... but the figure shown beside it can
    line = _realism_text(judged, {"longest_copy_chars": longest})
    assert f"AUC {judged['auc']:.2f}" in line and f"longest copy {longest} characters" in line
    assert judged["giveaways"]["samples"] and judged["giveaways"]["real"]
