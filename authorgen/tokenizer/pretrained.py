"""A pretrained model's own tokenizer (Hugging Face `tokenizer.json`, byte-level BPE as GPT-2's,
Pythia's and SmolLM2's), read with Hugging Face `tokenizers`.

Each token stands for bytes (GPT-2's byte-to-character alphabet undone), so decoding, streaming
and the checks that keep UTF-8 whole work as for sentencepiece's byte pieces, except that here
any token may begin or end inside a character. The model may have more embedding rows than the
tokenizer has tokens (Pythia pads to a multiple of 128): those ids, and the special tokens,
are never sampled.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from authorgen.errors import UsageError
from authorgen.files import atomic_write, atomic_write_json
from authorgen.tokenizer.base import FILENAME, SECOND_BYTE, BytePieceTokenizer, ByteStream

HF_FILENAME = "pretrained-tokenizer.json"  # the model's tokenizer.json, as it came
CONTINUATION = (0x80, 0xBF)


@cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's alphabet: each byte as a printable character, undone."""
    kept = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = list(kept), 0
    for b in range(256):
        if b not in kept:
            kept.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(kept, chars, strict=True)}


def _after(data: bytes, needed: int, next_range: tuple) -> tuple[int, tuple, bool]:
    """The UTF-8 state after `data` (continuation bytes still due, the range the next may take)
    and whether `data` kept UTF-8 valid from the state given."""
    valid = True
    for byte in data:
        if needed:
            valid &= next_range[0] <= byte <= next_range[1]
            needed, next_range = needed - 1, CONTINUATION
        elif byte < 0x80:
            continue
        elif 0xC2 <= byte < 0xF5:
            needed = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3
            next_range = SECOND_BYTE.get(byte, CONTINUATION)
        else:
            valid = False
    return needed, next_range, valid


class ByteDecoder(ByteStream):
    """Turns ids into text, holding back the bytes of a character not yet whole."""

    def __init__(self, tokenizer: PretrainedTokenizer):
        super().__init__()
        self.tok = tokenizer
        self.state = (0, CONTINUATION)

    def push(self, token_id: int) -> str:
        data = self.tok.piece_bytes[token_id]
        self.state = _after(data, *self.state)[:2]
        return self.utf8.decode(data)

    def banned(self) -> list[int]:
        return self.tok.banned_in(self.state)


class PretrainedTokenizer(BytePieceTokenizer):
    """A Hugging Face byte-level BPE tokenizer, for a model with `vocab_size` embedding rows."""

    kind = "pretrained"
    unk_id = -1  # byte-level: every text has tokens

    def __init__(self, data: bytes, vocab_size: int | None = None):
        from tokenizers import Tokenizer as HFTokenizer

        self.data = data
        spec = json.loads(data)
        if "ByteLevel" not in json.dumps(spec.get("decoder")):
            raise UsageError(
                "only byte-level BPE tokenizers (GPT-2's, Pythia's, SmolLM2's) are supported"
            )
        self.hf = HFTokenizer.from_str(data.decode("utf-8"))
        size = max(vocab_size or 0, self.hf.get_vocab_size(with_added_tokens=True))
        special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
        alphabet = _byte_of_char()
        self.piece_bytes: list[bytes] = []
        for i in range(size):
            token = self.hf.id_to_token(i)
            if token is None or i in special:
                self.piece_bytes.append(b"")
            elif all(c in alphabet for c in token):
                self.piece_bytes.append(bytes(alphabet[c] for c in token))
            else:  # an added token written as plain text
                self.piece_bytes.append(token.encode())
        self.special_ids = [i for i in range(size) if not self.piece_bytes[i]]
        self._banned: dict[tuple, list[int]] = {}

    def banned_in(self, state: tuple) -> list[int]:
        """The ids that would break UTF-8 after a text in `state` (`_after`), cached."""
        if state not in self._banned:
            self._banned[state] = [
                i for i, data in enumerate(self.piece_bytes) if data and not _after(data, *state)[2]
            ]
        return self._banned[state]

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decoder(self, prefix: str = "") -> ByteDecoder:
        return ByteDecoder(self)

    def start_ids(self) -> list[int]:
        return self.encode("\n")

    def safe_cut(self, text: str) -> int:
        """Before the last newline that follows a visible character: GPT-2's pre-tokenizer
        splits there whatever comes after."""
        at = text.rfind("\n")
        while at > 0 and text[at - 1].isspace():
            at = text.rfind("\n", 0, at - 1)
        return max(at, 0)

    def to_json(self) -> dict:
        return {"kind": self.kind, "file": HF_FILENAME, "vocab_size": self.vocab_size}

    def save(self, folder: Path) -> None:
        atomic_write(Path(folder) / HF_FILENAME, lambda tmp: Path(tmp).write_bytes(self.data))
        atomic_write_json(Path(folder) / FILENAME, self.to_json())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.data + str(self.vocab_size).encode()).hexdigest()
