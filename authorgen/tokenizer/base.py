"""What every tokenizer shares: the `<unk>` text, the file name, default methods, and the
shape of the incremental decoder each one gives for generation."""

from __future__ import annotations

import codecs
import copy
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from authorgen.files import atomic_write_json

UNK_TEXT = "\ufffd"  # how <unk> decodes: the Unicode replacement character
FILENAME = "tokenizer.json"
# the bytes that may follow a UTF-8 lead byte where not every continuation byte may (RFC 3629:
# no overlong forms, no surrogates, nothing past U+10FFFF)
SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}


class Decoder(Protocol):
    """Turns generated ids into text one at a time, holding back what is not yet whole."""

    def push(self, token_id: int) -> str:
        """The text that `token_id` completes (may be empty)."""
        ...

    def banned(self) -> list[int]:
        """Ids that cannot come next (they would break the text, e.g. a UTF-8 sequence)."""
        ...

    def flush(self) -> str:
        """Whatever is held back, now that no more ids come."""
        ...

    def clone(self) -> Decoder:
        """An independent copy, to try an id without committing to it."""
        ...


class BaseTokenizer:
    """What the tokenizers share: defaults the subclasses override where they differ."""

    def to_json(self) -> dict:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_array(self, text: str) -> np.ndarray:
        """The ids of a (large) text as a numpy array."""
        return np.array(self.encode(text), dtype=np.int64)

    def encode_prompt(self, text: str) -> list[int]:
        """The ids of a prompt; unknown parts read as in training."""
        return self.encode(text)

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / FILENAME, self.to_json())

    def fingerprint(self) -> str:
        """A hash of what `save` writes: equal fingerprints encode alike."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


class ByteStream:
    """What the decoders of tokenizers whose tokens stand for bytes share: an incremental UTF-8
    decoder that prints only whole characters, flushed at the end, copied to try a token."""

    def __init__(self):
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)

    def clone(self):
        """An independent copy, to try a token without committing to it."""
        other = copy.copy(self)
        other.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        other.utf8.setstate(self.utf8.getstate())
        return other


class BytePieceTokenizer(BaseTokenizer):
    """A tokenizer whose every token stands for bytes (`piece_bytes`): any text has tokens."""

    piece_bytes: list[bytes]

    @property
    def vocab_size(self) -> int:
        return len(self.piece_bytes)

    def unknown(self, text: str) -> list[str]:
        return []  # bytes spell every text

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.piece_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def first_token_chars(self, text: str) -> int:
        ids = self.encode(text[:64])
        if not ids:
            return 0
        first = self.piece_bytes[ids[0]]
        return len(text.encode()[: len(first)].decode("utf-8", errors="ignore"))
