"""What every tokenizer shares: the `<unk>` text, the file name, default methods, and the
shape of the incremental decoder each one gives for generation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from authorgen.files import atomic_write_json

UNK_TEXT = "\ufffd"  # how <unk> decodes: the Unicode replacement character
FILENAME = "tokenizer.json"


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
