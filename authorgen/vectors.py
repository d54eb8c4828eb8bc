"""Pretrained word vectors for word-level models, in GloVe's text format.

Each line is a word followed by its numbers, separated by single spaces (`the 0.418 0.24968 …`);
a word2vec-style first line holding only the counts (`400000 100`) is skipped, and files ending
in `.gz` are read compressed. Only the vectors of the run's vocabulary are kept, so a 1 GB file
costs one pass, not 1 GB of memory. A word missing from the file keeps a random vector of the
same scale; all of them are trained further with the model.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from authorgen.errors import DataError, UsageError


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"cannot read word vectors from {path} ({exc})") from None


def require_word_tokenizer(kind: str) -> None:
    """Raises UsageError unless `kind` is "word": the vectors are for whole words."""
    if kind != "word":
        raise UsageError(
            f"--pretrained-embeddings needs --tokenizer word (not {kind}): the vectors are for "
            "whole words"
        )


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def vector_dim(path: str | Path) -> int:
    """The number of dimensions of the vectors in `path` (from its first vector line).

    Raises:
        DataError: when the file is missing, empty or not in this format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no word-vector file at {path}; give the path of a GloVe .txt file")
    for number, line in _lines(path):
        parts = line.rstrip("\n").split(" ")
        if number == 1 and _is_header(parts):
            continue
        if len(parts) < 2:
            break
        return len(parts) - 1
    raise DataError(f"{path} holds no word vectors (expected lines like 'word 0.1 -0.2 ...')")


@dataclass
class WordVectors:
    """The vectors found for a vocabulary, and how much of it they cover."""

    path: Path
    matrix: np.ndarray  # (V, D) float32; zero rows where no vector was found
    found: np.ndarray  # (V,) bool
    token_share: float  # share of the training tokens whose word has a vector

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def type_share(self) -> float:
        return float(self.found[1:].mean()) if len(self.found) > 1 else 0.0  # <unk> not counted

    def describe(self) -> str:
        return (
            f"word vectors {self.path.name}: {int(self.found.sum()):,} of "
            f"{len(self.found) - 1:,} words ({self.type_share:.1%} of the vocabulary, "
            f"{self.token_share:.1%} of the training tokens), {self.dim} dimensions"
        )

    def copy_into(self, embedding) -> None:
        """Set an `nn.Embedding`'s rows: the found vectors, and random ones of the same scale."""
        import torch

        scale = float(self.matrix[self.found].std()) if self.found.any() else 1.0
        with torch.no_grad():
            weight = embedding.weight
            weight.normal_(0.0, scale)
            found = torch.from_numpy(self.found)
            weight[found] = torch.from_numpy(self.matrix[self.found]).to(weight.dtype)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "dim": self.dim,
            "words_found": int(self.found.sum()),
            "vocabulary_share": round(self.type_share, 6),
            "token_share": round(self.token_share, 6),
        }


def read_word_vectors(path: str | Path, tokenizer, train_ids: np.ndarray) -> WordVectors:
    """The vectors of `tokenizer`'s words from a GloVe text file.

    A word is looked up as it is, then lowercased (GloVe's common vectors are lowercase).
    `train_ids` gives the token share covered.

    Raises:
        UsageError: when the tokenizer is not word-level.
        DataError: when the file is missing, damaged, or covers none of the vocabulary.
    """
    require_word_tokenizer(tokenizer.kind)
    path = Path(path)
    dim = vector_dim(path)
    by_lower: dict[str, list[int]] = {}
    for i, token in enumerate(tokenizer.tokens[1:], 1):
        by_lower.setdefault(token.lower(), []).append(i)
    matrix = np.zeros((tokenizer.vocab_size, dim), dtype=np.float32)
    found = np.zeros(tokenizer.vocab_size, dtype=bool)
    exact = np.zeros(tokenizer.vocab_size, dtype=bool)
    for number, line in _lines(path):
        parts = line.rstrip("\n").split(" ")
        if number == 1 and _is_header(parts):
            continue
        if len(parts) <= dim:
            if line.strip():
                raise DataError(
                    f"{path}, line {number}: {len(parts) - 1} numbers where the first vector "
                    f"had {dim}; the file is damaged or not GloVe text"
                )
            continue
        word = " ".join(parts[:-dim])  # some GloVe files have words with spaces
        ids = [i for i in by_lower.get(word.lower(), ()) if not exact[i]]
        if not ids:
            continue
        try:
            vector = np.array(parts[-dim:], dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}, line {number}: not a list of numbers") from None
        if not np.isfinite(vector).all():
            raise DataError(f"{path}, line {number}: the vector has NaN or infinite numbers")
        for i in ids:
            if tokenizer.tokens[i] == word or not found[i]:
                matrix[i], found[i] = vector, True
                exact[i] = tokenizer.tokens[i] == word
    if not found.any():
        raise DataError(
            f"{path} has none of the {tokenizer.vocab_size - 1:,} words of this vocabulary; "
            "is it for another language?"
        )
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for at in range(0, len(train_ids), 1 << 22):  # in slices: the ids may be a large memmap
        counts += np.bincount(train_ids[at : at + (1 << 22)], minlength=tokenizer.vocab_size)
    share = float(counts[found].sum() / max(1, counts.sum()))
    return WordVectors(path, matrix, found, share if math.isfinite(share) else 0.0)
