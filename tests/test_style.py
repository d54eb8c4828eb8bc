"""Stylometry: Delta's properties, and authors told apart on the books of tests/data."""

from __future__ import annotations

import pytest

from authorgen import style
from authorgen.clean import clean_text
from helpers import DATA, manifest_rows
from texts import ENGLISH, FRENCH


@pytest.fixture(scope="module")
def books() -> dict[str, tuple[str, str]]:
    """file -> (author, cleaned text) for the Gutenberg books of tests/data (150 KB each)."""
    rows = [r for r in manifest_rows() if r["gutenberg_id"]]
    assert len(rows) == 8
    return {r["file"]: (r["author"], clean_text((DATA / r["file"]).read_bytes())[0]) for r in rows}


def test_held_out_work_is_closest_to_its_own_author(books):
    """Dickens has two books: one is held out and must be closest to the other. Each other
    author's book is cut: its last 30% must be closest to its first 70%."""
    wins = []
    for name, (author, text) in books.items():
        others = [t for f, (a, t) in books.items() if a == author and f != name]
        if others:
            query, own = text, others[0]
        else:
            cut = int(len(text) * 0.7)
            query, own = text[cut:], text[:cut]
        candidates = {author: own[:250_000]}
        for a, t in books.values():
            if a != author:
                candidates[a] = (candidates.get(a, "") + "\n\n" + t)[:250_000]
        result = style.compare(query[:150_000], candidates, author)
        wins.append((name, result["rank"], result["summary"]))
        assert result["closest"] == author, result["summary"]
        assert result["summary"].startswith(f"closer to {author} than to the other")
    assert len(wins) == len(books) and any("Dickens" in s for _, _, s in wins)


def test_delta_is_symmetric_and_zero_on_identical_profiles():
    scale = style.make_scale([style.words_of(ENGLISH), style.words_of(FRENCH)], mfw=40)
    a, b = style.profile(ENGLISH), style.profile(FRENCH)
    assert style.delta(a, b, scale) == pytest.approx(style.delta(b, a, scale))
    assert style.cosine_delta(a, b, scale) == pytest.approx(style.cosine_delta(b, a, scale))
    assert style.delta(a, style.profile(ENGLISH), scale) == 0.0
    assert style.cosine_delta(a, a, scale) == pytest.approx(0.0, abs=1e-12)
    assert style.delta(a, b, scale) > 0.5  # English and French are far apart


def test_the_report_says_how_close_in_words():
    candidates = {"english": ENGLISH * 3, "french": FRENCH * 3}
    result = style.compare(ENGLISH, candidates, author="english", mfw=30)
    assert result["rank"] == 1 and result["closest"] == "english"
    assert result["summary"].startswith("closer to english than to the other 1 author; Delta")
    far = style.compare(FRENCH, candidates, author="english", mfw=30)
    assert far["rank"] == 2 and far["summary"].startswith("closer to french than to english")
    assert set(result["features"]) == {
        "char3_cosine_distance", "sentence_words", "word_chars", "punctuation_per_1000"
    }  # fmt: skip


def test_chunks_keep_every_word_and_leave_no_short_last_chunk():
    words = [f"w{i}" for i in range(2400)]
    pieces = style.chunks(words, 2000)
    assert [len(p) for p in pieces] == [2400]  # 400 would be too short alone
    pieces = style.chunks(words, 1000)
    assert [len(p) for p in pieces] == [1000, 1400] and [w for p in pieces for w in p] == words
    assert [len(p) for p in style.chunks(words, 800)] == [800, 800, 800]
    assert style.chunks([], 10) == [[]]
