"""Tokenizers. For now one: characters (Unicode code points of NFC text).

The vocabulary comes from the training split only. A character that only the validation text
(or a later input) has is encoded as `<unk>`, the last id: the model never sees it in training, so
validation honestly pays for it, and generation never produces it. Prompts are encoded strictly:
an unseen character is an error that names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from authorgen.errors import DataError
from authorgen.files import atomic_write_json

UNK_TEXT = "\ufffd"  # how <unk> decodes: the Unicode replacement character


class CharTokenizer:
    """Maps each character to an id; id `len(chars)` is `<unk>`."""

    kind = "char"
    filename = "tokenizer.json"

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.unk_id = len(self.chars)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The sorted set of characters in `text`."""
        if not text:
            raise DataError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; unseen characters become `unk_id`."""
        get, unk = self.index.get, self.unk_id
        return [get(c, unk) for c in text]

    def encode_strict(self, text: str) -> list[int]:
        """Ids of `text`.

        Raises:
            DataError: naming the characters the vocabulary does not have.
        """
        unseen = sorted({c for c in text if c not in self.index})
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

    def save(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / self.filename, {"kind": self.kind, "chars": self.chars})

    @classmethod
    def load(cls, run_dir: Path) -> CharTokenizer:
        path = Path(run_dir) / cls.filename
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("kind") != cls.kind or not isinstance(data.get("chars"), list):
                raise ValueError("not a char tokenizer")
            return cls(data["chars"])
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is missing or damaged ({exc}); train the run again") from None
