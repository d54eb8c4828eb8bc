"""Subwords: sentencepiece BPE or unigram, set up to round-trip any text exactly."""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from authorgen.errors import DataError, UsageError
from authorgen.files import atomic_write, atomic_write_json
from authorgen.tokenizer.base import (
    FILENAME,
    SECOND_BYTE,
    UNK_TEXT,
    BytePieceTokenizer,
    ByteStream,
)

SPM_FILENAME = "tokenizer.model"


class PieceDecoder(ByteStream):
    """Maps pieces to bytes and prints only whole characters."""

    def __init__(self, tokenizer: SentencePieceTokenizer):
        super().__init__()
        self.tok = tokenizer
        self.needed = 0  # continuation bytes still due for the character begun
        self.next_range = (0x80, 0xBF)  # the bytes the next continuation byte may be

    def push(self, token_id: int) -> str:
        data = self.tok.piece_bytes[token_id]
        if token_id in self.tok.byte_ids:
            byte = data[0]
            if byte < 0x80:  # ASCII, whole
                self.needed = 0
            elif byte < 0xC0:
                self.needed = max(0, self.needed - 1)
                self.next_range = (0x80, 0xBF)
            else:
                self.needed = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3
                # no overlong forms, no surrogates, nothing past U+10FFFF (RFC 3629)
                self.next_range = SECOND_BYTE.get(byte, (0x80, 0xBF))
        else:
            self.needed = 0
        return self.utf8.decode(data)

    def banned(self) -> list[int]:
        """Ids that would make broken UTF-8 here: while a character is begun only the
        continuation bytes it can take may follow, and otherwise no continuation byte may."""
        if self.needed:
            return self.tok.banned_except_continuations(*self.next_range)
        return self.tok.bad_starts


META = "\u2581"  # sentencepiece's visible space, which a text may also contain literally


class SentencePieceTokenizer(BytePieceTokenizer):
    """A sentencepiece BPE or unigram model that round-trips any text exactly."""

    def __init__(self, kind: str, proto: bytes):
        import sentencepiece as spm

        self.kind, self.proto = kind, proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        size = self.sp.get_piece_size()
        self.piece_bytes = []
        for i in range(size):
            piece = self.sp.id_to_piece(i)
            if self.sp.is_byte(i):
                self.piece_bytes.append(bytes([int(piece[3:5], 16)]))  # "<0xC5>"
            elif self.sp.is_control(i):
                self.piece_bytes.append(b"")
            elif self.sp.is_unknown(i):
                self.piece_bytes.append(UNK_TEXT.encode())
            else:
                self.piece_bytes.append(piece.replace(META, " ").encode())
        self.byte_ids = {i for i in range(size) if self.sp.is_byte(i)}
        continuation = {i for i in self.byte_ids if 0x80 <= self.piece_bytes[i][0] < 0xC0}
        invalid = {i for i in self.byte_ids if self.piece_bytes[i][0] in (0xC0, 0xC1)}
        invalid |= {i for i in self.byte_ids if self.piece_bytes[i][0] >= 0xF5}
        self.bad_starts = sorted(continuation | invalid)
        self._banned: dict[tuple[int, int], list[int]] = {}
        self.unk_id = self.sp.unk_id()
        self.special_ids = [
            i for i in range(size) if self.sp.is_control(i) or self.sp.is_unknown(i)
        ]
        self._meta_ids = [self.sp.piece_to_id(f"<0x{b:02X}>") for b in META.encode()]

    def banned_except_continuations(self, low: int, high: int) -> list[int]:
        """Every id but the byte pieces low..high (cached: a handful of ranges exist)."""
        if (low, high) not in self._banned:
            allowed = {i for i in self.byte_ids if low <= self.piece_bytes[i][0] <= high}
            self._banned[low, high] = sorted(set(range(self.vocab_size)) - allowed)
        return self._banned[low, high]

    @classmethod
    def train(
        cls, kind: str, chunks: Iterable[str], vocab_size: int, seed: int = 0
    ) -> SentencePieceTokenizer:
        """Train on the lines of the text (a sample of 2 million lines when there are more)."""
        import sentencepiece as spm

        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=_lines(chunks),
                model_writer=model,
                model_type=kind,
                vocab_size=vocab_size,
                normalization_rule_name="identity",  # no NFKC: text comes back as it went in
                add_dummy_prefix=False,
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,  # runs of spaces (verse indentation)
                user_defined_symbols=["\n"],
                byte_fallback=True,  # rare characters as UTF-8 bytes, never <unk>
                split_digits=True,
                character_coverage=0.9995,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                max_sentence_length=1 << 16,  # bytes; unwrapped paragraphs are long
                input_sentence_size=2_000_000,
                shuffle_input_sentence=True,
                num_threads=os.cpu_count() or 1,
                minloglevel=2,
            )
        except RuntimeError as exc:
            most = re.search(r"value <= (\d+)", str(exc))
            if most:
                raise UsageError(
                    f"--vocab-size {vocab_size} is too large for this text: sentencepiece can "
                    f"make at most {most.group(1)} {kind} pieces from it; use a smaller one"
                ) from None
            raise DataError(f"sentencepiece could not train on this text ({exc})") from None
        return cls(kind, model.getvalue())

    def encode(self, text: str) -> list[int]:
        if META not in text:
            return self.sp.encode(text)
        ids: list[int] = []  # a literal "▁" goes in as its three bytes, so it comes back as "▁"
        for i, part in enumerate(text.split(META)):
            if i:
                ids += self._meta_ids
            if part:
                ids += self.sp.encode(part)
        return ids

    def decoder(self, prefix: str = "") -> PieceDecoder:
        return PieceDecoder(self)

    def start_ids(self) -> list[int]:
        return self.encode("\n")

    def safe_cut(self, text: str) -> int:
        return text.rfind("\n") + 1  # the newline is a piece of its own

    def to_json(self) -> dict:
        return {"kind": self.kind, "model": SPM_FILENAME, "vocab_size": self.vocab_size}

    def save(self, folder: Path) -> None:
        atomic_write(Path(folder) / SPM_FILENAME, lambda tmp: Path(tmp).write_bytes(self.proto))
        atomic_write_json(Path(folder) / FILENAME, self.to_json())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.proto).hexdigest()


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """The non-empty lines of a text that arrives in chunks."""
    carry = ""
    for chunk in chunks:
        lines = (carry + chunk).split("\n")
        carry = lines.pop()
        yield from (line for line in lines if line)
    if carry:
        yield carry
