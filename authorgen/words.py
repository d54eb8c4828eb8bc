"""Words: the words of a run's training text, and how many of a text's words are not among
them (`invented_words`).

A word is a run of letters of any script with inner apostrophes ("don't", "aujourd'hui",
"źdźbło"), compared case-folded with ’ read as '. Digits, underscores and every other character
stand between words. The run's words are kept, one per line and sorted, in `words.txt` beside
its originality index (see `originality.py`); the text held out for validation is not in them.
The rule that lets a model spell only these words is `known_words.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from authorgen.files import atomic_write_text

WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
LETTER = re.compile(r"[^\W\d_]")
APOSTROPHES = "'’"
WORDS = "words.txt"  # beside the originality index


def fold(word: str) -> str:
    """How words are compared: case-folded, ’ as '."""
    return word.casefold().replace("’", "'")


def words_in(chunks: Iterable[str]) -> Iterator[str]:
    """The words of a text given in chunks, folded; a word cut by a chunk's end is kept whole."""
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        carry = ""
        last = None
        for match in WORD_RE.finditer(text):
            if last is not None:
                yield fold(last.group())
            last = match
        if last is not None:
            rest = text[last.end() :]
            if rest in ("", *APOSTROPHES):  # the word may go on in the next chunk
                carry = text[last.start() :]
            else:
                yield fold(last.group())
    if carry:
        yield from (fold(m.group()) for m in WORD_RE.finditer(carry))


def write_words(path: Path, words: Iterable[str]) -> None:
    atomic_write_text(path, "\n".join(sorted(set(words))))


def read_words(path: Path) -> frozenset[str]:
    text = Path(path).read_text(encoding="utf-8")
    return frozenset(text.split("\n")) if text else frozenset()


def invented(text: str, known: frozenset[str], before: str = "", cut: bool = False) -> dict:
    """How many words of `text` are not `known`: {invented_words (their share, None without
    words), words, invented (how many), invented_examples (up to 5, in order)}.

    `before` is what came before the text (a prompt): a word it began is judged whole. With
    `cut`, a word running to the end of the text (or to an apostrophe there) may be cut off and
    is not judged.
    """
    whole = before + text
    total, unknown, examples = 0, 0, []
    for match in WORD_RE.finditer(whole):
        if match.end() <= len(before) or (cut and whole[match.end() :] in ("", *APOSTROPHES)):
            continue
        total += 1
        word = fold(match.group())
        if word not in known:
            unknown += 1
            if len(examples) < 5 and match.group() not in examples:
                examples.append(match.group())
    return {**_share(unknown, total), "invented_examples": examples}


def _share(unknown: int, total: int) -> dict:
    return {
        "invented_words": round(unknown / total, 4) if total else None,
        "words": total,
        "invented": unknown,
    }


def invented_in(chunks: Iterable[str], known: frozenset[str]) -> dict:
    """`invented`'s counts for a long text given in chunks (held-out text): {invented_words,
    words, invented}."""
    total = unknown = 0
    for word in words_in(chunks):
        total += 1
        unknown += word not in known
    return _share(unknown, total)


def pooled(reports: Iterable[dict]) -> dict:
    """The counts of several texts' `invented` reports together."""
    reports = list(reports)
    return _share(sum(r["invented"] for r in reports), sum(r["words"] for r in reports))
