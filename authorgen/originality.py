"""Originality: how much of a text is copied verbatim from the corpus a model learned from.

The index is the corpus as UTF-8 bytes and its suffix array (every suffix's start, in sorted
order, built by libdivsufsort through pydivsufsort), kept in the run's `index/` folder:

    text.bin       the works' cleaned text, joined by a NUL byte, so that no match spans two works
    suffixes.npy   int32 (int64 past 2 GiB) suffix array, read memory-mapped
    works.json     [{id, title, start, stop, offset[, heldout]}]: each part's bytes in text.bin;
                   offset is where the part begins in its work, in characters; heldout marks the
                   text held out for validation
    words.txt      the words of the training parts (see `words.py`), written on first use for
                   an index made before it was

A string occurs in the corpus when a binary search over the sorted suffixes finds a suffix that
begins with it: about 2 log2(bytes) comparisons, some microseconds each. From that:

- `longest_copy_chars`: the longest stretch of the text that occurs in the corpus. It is found
  with matching statistics: walking through the text, keep the longest suffix of what was read
  that occurs; on a new character, extend it, and drop characters from its front until it occurs
  again. Each character costs about two lookups.
- `invented_words`: the share of the text's words that the training parts never use.
- `novel_8gram_share`: of the text's runs of 8 consecutive words (`\\w+`, with whatever stands
  between them), the share that occurs nowhere in the corpus as whole words.

It costs 5 bytes per character of corpus on disk (9 past 2 GiB) and is built in about 0.1 s per
megabyte on one core.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import mmap
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from authorgen.corpus import TextSlice, read_chunks
from authorgen.errors import DataError
from authorgen.files import atomic_write_json, staged_dir
from authorgen.known_words import KnownWords, Vocabulary
from authorgen.words import WORDS, invented, read_words, words_in, write_words

TEXT = "text.bin"
SUFFIXES = "suffixes.npy"
WORKS = "works.json"
NGRAM = 8  # words in the n-grams whose novelty is reported
SEPARATOR = b"\x00"  # between parts: no cleaned text has it, so no match crosses it
WORD_RE = re.compile(r"\w+")
_BOUNDARY_CHECKS = 64  # occurrences of an n-gram checked for whole-word boundaries


def build_index(dest: Path, sources: Iterable[tuple[dict, str | TextSlice]]) -> None:
    """Index the text of `sources` ((label, part) pairs; label: {id, title[, offset]}) into the
    folder `dest`, written whole or not at all."""
    from pydivsufsort import divsufsort  # C code; imported only when building

    works, pieces, at, known = [], [], 0, set()
    for i, (label, part) in enumerate(sources):
        if i:
            pieces.append(SEPARATOR)
            at += 1
        chars = "".join(read_chunks([part])).replace("\x00", " ")
        if not label.get("heldout"):
            known.update(words_in([chars]))
        data = chars.encode("utf-8")
        pieces.append(data)
        works.append(
            {**label, "offset": label.get("offset", 0), "start": at, "stop": at + len(data)}
        )
        at += len(data)
    text = np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()  # divsufsort needs it writable
    del pieces
    suffixes = divsufsort(text) if len(text) else np.zeros(0, dtype=np.int32)
    with staged_dir(dest) as staged:
        with open(staged / TEXT, "wb") as f:
            f.write(text.tobytes())
        np.save(staged / SUFFIXES, suffixes)
        atomic_write_json(staged / WORKS, works)
        write_words(staged / WORDS, known)


class Index:
    """A corpus index, opened read-only and memory-mapped (see the module's docstring)."""

    def __init__(self, folder: Path):
        try:
            self.works = json.loads((folder / WORKS).read_text(encoding="utf-8"))
            self.suffixes = np.load(folder / SUFFIXES, mmap_mode="r")
            with open(folder / TEXT, "rb") as f:
                empty = os.fstat(f.fileno()).st_size == 0
                self.text = b"" if empty else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"the originality index in {folder} is damaged ({exc}); delete the folder to "
                "generate without originality reports"
            ) from None
        if len(self.suffixes) != len(self.text):
            raise DataError(
                f"the originality index in {folder} is damaged (sizes differ); delete the folder "
                "to generate without originality reports"
            )
        self._starts = [w["start"] for w in self.works]
        self.folder = folder
        self._vocabulary: Vocabulary | None = None
        self._known_words: tuple[object, KnownWords] | None = None

    def vocabulary(self) -> Vocabulary:
        """The words of the training parts, read from `words.txt` (made and kept there, where
        the folder may be written, for an index from before it was)."""
        if self._vocabulary is None:
            try:
                words = read_words(self.folder / WORDS)
            except FileNotFoundError:
                words = frozenset(self._training_words())
                with contextlib.suppress(OSError):  # a read-only run: made again next time
                    write_words(self.folder / WORDS, words)
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(
                    f"the word list {self.folder / WORDS} cannot be read ({exc}); delete it and "
                    "it is made again"
                ) from None
            self._vocabulary = Vocabulary(words)
        return self._vocabulary

    def _training_words(self) -> Iterator[str]:
        """The words of every part but the held-out ones (for an index that does not mark
        them: the last part, as training always put the held-out text last)."""
        marked = any("heldout" in w for w in self.works)
        for i, work in enumerate(self.works):
            heldout = work.get("heldout") if marked else i == len(self.works) - 1 and i > 0
            if not heldout:
                chunk = self.text[work["start"] : work["stop"]]
                yield from words_in([bytes(chunk).decode("utf-8", errors="replace")])

    def known_words(self, tokenizer) -> KnownWords:
        """The `--known-words` rule for `tokenizer` over this index's words (kept for the last
        tokenizer asked, with what it has learnt of each state)."""
        if self._known_words is None or self._known_words[0] is not tokenizer:
            self._known_words = (tokenizer, KnownWords(self.vocabulary(), tokenizer))
        return self._known_words[1]

    def _lower(self, pattern: bytes, upper: bool = False) -> int:
        """The first suffix (in sorted order) whose first len(pattern) bytes are >= pattern
        (> pattern when `upper`)."""
        text, suffixes, m = self.text, self.suffixes, len(pattern)
        lo, hi = 0, len(suffixes)
        while lo < hi:
            mid = (lo + hi) // 2
            start = int(suffixes[mid])
            head = text[start : start + m]
            if head < pattern or (upper and head == pattern):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _range(self, pattern: bytes) -> tuple[int, int]:
        """Suffixes lo..hi-1 begin with `pattern`."""
        return self._lower(pattern), self._lower(pattern, upper=True)

    def contains(self, text: str) -> bool:
        """Whether `text` occurs in the corpus (never across two works)."""
        pattern = text.encode("utf-8")
        if SEPARATOR in pattern:
            return False
        at = self._lower(pattern)
        if at == len(self.suffixes):
            return False
        start = int(self.suffixes[at])
        return self.text[start : start + len(pattern)] == pattern

    def grow(self, suffix: str, ch: str) -> str:
        """The longest suffix of `suffix + ch` that occurs in the corpus, where `suffix` is the
        longest occurring suffix of what came before (matching statistics)."""
        suffix += ch
        while suffix and not self.contains(suffix):
            suffix = suffix[1:]
        return suffix

    def locate(self, text: str) -> dict | None:
        """Where `text` occurs: {work, title, offset (characters into the work), occurrences}."""
        lo, hi = self._range(text.encode("utf-8"))
        if lo == hi:
            return None
        pos = min(int(self.suffixes[i]) for i in range(lo, min(hi, lo + _BOUNDARY_CHECKS)))
        work = self.works[bisect.bisect_right(self._starts, pos) - 1]
        before = self.text[work["start"] : pos].decode("utf-8", errors="replace")
        return {
            "work": work["id"],
            "title": work.get("title", ""),
            "offset": work["offset"] + len(before),
            "occurrences": hi - lo,
        }

    def _is_word(self, at: int, back: bool) -> bool:
        """Whether the character just before (back) or at byte `at` is a word character."""
        if back:
            chunk = self.text[max(0, at - 4) : at].decode("utf-8", errors="ignore")[-1:]
        else:
            chunk = self.text[at : at + 4].decode("utf-8", errors="ignore")[:1]
        return bool(chunk) and bool(WORD_RE.match(chunk))

    def has_words(self, text: str) -> bool:
        """Whether `text` (which begins and ends with a word character) occurs as whole words."""
        pattern = text.encode("utf-8")
        lo, hi = self._range(pattern)
        for i in range(lo, min(hi, lo + _BOUNDARY_CHECKS)):
            start = int(self.suffixes[i])
            if not self._is_word(start, back=True) and not self._is_word(
                start + len(pattern), back=False
            ):
                return True
        return False

    def report(self, text: str, before: str = "", cut: bool = False) -> dict:
        """How original `text` is: {longest_copy_chars, copy: {start, stop, text, work, title,
        offset, occurrences} or None, novel_8gram_share (None under 8 words), ngrams,
        invented_words, words, invented_examples} (the last three: `words.invented`'s, with
        `before` and `cut`)."""
        best_len, best_end, suffix = 0, 0, ""
        for i, ch in enumerate(text):
            suffix = self.grow(suffix, ch)
            if len(suffix) > best_len:
                best_len, best_end = len(suffix), i + 1
        copy = None
        if best_len:
            span = text[best_end - best_len : best_end]
            copy = {"start": best_end - best_len, "stop": best_end, "text": span}
            copy.update(self.locate(span) or {})
        words = [m.span() for m in WORD_RE.finditer(text)]
        grams = [(words[i][0], words[i + NGRAM - 1][1]) for i in range(len(words) - NGRAM + 1)]
        novel = sum(not self.has_words(text[a:b]) for a, b in grams)
        return {
            "longest_copy_chars": best_len,
            "copy": copy,
            "novel_8gram_share": round(novel / len(grams), 4) if grams else None,
            "ngrams": len(grams),
            **invented(text, self.vocabulary().words, before, cut),
        }


class CopyGuard:
    """Follows a text as it is generated and refuses a piece that would make a stretch of more
    than `limit` characters copied verbatim from the corpus (`--max-copy`)."""

    def __init__(self, index: Index, limit: int):
        self.index, self.limit = index, limit
        self.suffix = ""  # the longest end of the text so far that occurs in the corpus

    def check(self, piece: str) -> str | None:
        """The suffix after `piece` if no stretch of the text then copies more than the limit,
        else None (nothing changes)."""
        suffix = self.suffix
        for ch in piece:
            suffix = self.index.grow(suffix, ch)
            if len(suffix) > self.limit:
                return None
        return suffix

    def accept(self, suffix: str) -> None:
        self.suffix = suffix
