"""Characters: Unicode code points of NFC text."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from authorgen.errors import DataError
from authorgen.tokenizer.base import UNK_TEXT, BaseTokenizer


class CharDecoder:
    """Incremental decoding is plain decoding when every token is whole characters."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def push(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def banned(self) -> list[int]:
        """Ids that cannot come next (see `PieceDecoder.banned`)."""
        return []

    def flush(self) -> str:
        return ""

    def clone(self) -> CharDecoder:
        return self  # nothing to copy: it keeps no state


class CharTokenizer(BaseTokenizer):
    """Maps each character to an id; id `len(chars)` is `<unk>`."""

    kind = "char"

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.unk_id = len(self.chars)
        self.special_ids = [self.unk_id]
        # sorted code points, for encoding a large text with one numpy search
        self._points = np.array([ord(c) for c in self.chars], dtype=np.uint32)

    @classmethod
    def train(cls, chunks: Iterable[str]) -> CharTokenizer:
        """The sorted set of characters in the text."""
        seen: set[str] = set()
        for chunk in chunks:
            seen.update(chunk)
        if not seen:
            raise DataError("cannot build a vocabulary from empty text")
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; unseen characters become `unk_id`."""
        get, unk = self.index.get, self.unk_id
        return [get(c, unk) for c in text]

    def encode_array(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        at = np.searchsorted(self._points, points)
        at_clipped = np.minimum(at, len(self._points) - 1)
        return np.where(self._points[at_clipped] == points, at, self.unk_id)

    def unknown(self, text: str) -> list[str]:
        return sorted({c for c in text if c not in self.index})

    def encode_prompt(self, text: str) -> list[int]:
        """Ids of a prompt.

        Raises:
            DataError: naming the characters the vocabulary does not have (the model never
                learned what `<unk>` means as input).
        """
        unseen = self.unknown(text)
        if unseen:
            shown = ", ".join(repr(c) for c in unseen[:10])
            more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
            raise DataError(
                f"the prompt has characters this model never saw in training: {shown}{more}; "
                "remove or replace them"
            )
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        chars, n = self.chars, len(self.chars)
        return "".join(chars[i] if i < n else UNK_TEXT for i in ids)

    def decoder(self, prefix: str = "") -> CharDecoder:
        return CharDecoder(self)

    def start_ids(self) -> list[int]:
        """What generation starts from without a prompt: a newline, as at a paragraph start."""
        return self.encode("\n" if "\n" in self.index else self.chars[0])

    def safe_cut(self, text: str) -> int:
        return len(text)

    def first_token_chars(self, text: str) -> int:
        return min(1, len(text))

    def to_json(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}
