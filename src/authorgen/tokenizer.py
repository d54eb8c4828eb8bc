"""Tokenizers: characters, words, or subwords (sentencepiece BPE or unigram).

All share one interface, so the rest of the tool never asks which one it holds:

    encode(text) -> list[int]         encode_array(text) -> numpy ids (fast path for corpora)
    decode(ids) -> str                decoder(prefix) -> an incremental decoder for streaming
    unknown(text) -> what the vocabulary lacks     special_ids: ids never to sample
    safe_cut(text) -> where a long text can be cut into pieces that encode independently
    save(folder) / load_tokenizer(folder)          fingerprint(): a hash of what was saved

- char: Unicode code points of NFC text, the vocabulary from the training split. A character
  only the validation text has becomes `<unk>` (the last id), so validation honestly pays for it;
  generation never produces it, and a prompt with such a character is refused.
- word: words (letters with inner apostrophes), single digits and single punctuation marks, plus
  the newline; the `vocab_size - 1` most frequent are kept and the rest read as `<unk>` (id 0).
  Spaces are not tokens: decoding puts them back by rules learned from the training text (which
  marks attach to the word before or after, which quotes open and close), and with `lowercase`
  it restores each word's usual capitalisation and capitals at sentence starts.
- bpe / unigram: sentencepiece, set up so that any text round-trips exactly: identity
  normalisation, no dummy prefix, whitespace kept as is, the newline a piece of its own, and byte
  fallback for characters outside the vocabulary. Decoding maps pieces to bytes, so streaming
  never prints half a character.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from authorgen.config import TokenizerConfig
from authorgen.errors import DataError, UsageError
from authorgen.files import atomic_write, atomic_write_json

UNK_TEXT = "\ufffd"  # how <unk> decodes: the Unicode replacement character
FILENAME = "tokenizer.json"
SPM_FILENAME = "tokenizer.model"


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


class CharTokenizer:
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

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / FILENAME, self.to_json())

    def fingerprint(self) -> str:
        return _sha256_json(self.to_json())


# Words: letters with inner apostrophes (don't, l'homme, aujourd'hui), single digits (so every
# number is spelled from ten known tokens), any other visible character alone, and the newline.
WORD_RE = re.compile(r"\n|[^\W\d_]+(?:['’][^\W\d_]+)*|\d|\S")
SENTENCE_END = frozenset(".!?…")
# a word after a letter, digit, comma, semicolon or colon and a space: not a sentence start, so
# its capital (London, I) is its own
MID_SENTENCE_WORD_RE = re.compile(r"(?<=[\w,;:] )[^\W\d_]+(?:['’][^\W\d_]+)*")


class WordTokenizer:
    """Words and punctuation as tokens; id 0 is `<unk>`, the rest by falling frequency."""

    kind = "word"

    def __init__(
        self,
        tokens: Sequence[str],
        lowercase: bool = False,
        attach_left: Iterable[str] = (),
        attach_right: Iterable[str] = (),
        toggles: Iterable[str] = (),
        casing: dict[str, str] | None = None,
        capitalize_lines: bool = False,
    ):
        self.tokens = ["<unk>", *tokens]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.unk_id = 0
        self.special_ids = [0]
        self.lowercase = lowercase
        self.attach_left = frozenset(attach_left)  # no space before these ("," "." ")")
        self.attach_right = frozenset(attach_right)  # no space after these ("(" "«")
        self.toggles = frozenset(toggles)  # the same mark opens and closes ('"' '_')
        self.casing = casing or {}  # lowercased word -> its usual spelling ("london" -> "London")
        self.capitalize_lines = capitalize_lines  # verse: every line starts with a capital

    @classmethod
    def train(
        cls, chunks: Iterable[str], vocab_size: int, lowercase: bool = False
    ) -> WordTokenizer:
        """Count tokens and learn the spacing and capitalisation rules from the text."""
        counts: Counter[str] = Counter()
        surface: Counter[str] = Counter()  # original spellings, with lowercase
        spacing: dict[str, list[int]] = {}  # mark -> [space before, none before, after, none]
        shapes: Counter[str] = Counter()  # mark -> "open" / "close" uses, for quotes
        line_caps = [0, 0]  # lines starting with a lowercase / capital letter
        for chunk in chunks:
            words = WORD_RE.findall(chunk)
            if lowercase:
                surface.update(MID_SENTENCE_WORD_RE.findall(chunk))
                words = [w.lower() for w in words]
            counts.update(words)
            _count_spacing(chunk, spacing, shapes)
            for first in re.findall(r"[^\n]\n([^\W\d_])", chunk):
                line_caps[first.isupper()] += 1
        if not counts:
            raise DataError("cannot build a vocabulary from empty text")
        kept = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        kept = kept[: vocab_size - 1]
        kept_set = set(kept)
        attach_left, attach_right, toggles = [], [], []
        for mark, (sp_before, tight_before, sp_after, tight_after) in spacing.items():
            uses = sum(shapes[f"{mark} {s}"] for s in ("open", "close", "other"))
            opens, closes = shapes[f"{mark} open"], shapes[f"{mark} close"]
            if uses and opens >= 0.25 * uses and closes >= 0.25 * uses:
                toggles.append(mark)
                continue
            if tight_before > sp_before:
                attach_left.append(mark)
            if tight_after > sp_after:
                attach_right.append(mark)
        casing = {}
        if lowercase:  # the spelling a word has in mid-sentence more than half the time
            seen: Counter[str] = Counter()
            for word, n in surface.items():
                seen[word.lower()] += n
            for word, n in surface.items():
                key = word.lower()
                if word != key and n * 2 > seen[key] and key in kept_set:
                    casing[key] = word
        return cls(
            kept,
            lowercase,
            sorted(attach_left),
            sorted(attach_right),
            sorted(toggles),
            casing,
            line_caps[1] > line_caps[0],
        )

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """The token strings of `text`, in vocabulary form (lowercased when the vocabulary is)."""
        return WORD_RE.findall(text.lower() if self.lowercase else text)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(t, 0) for t in self.split(text)]

    def encode_array(self, text: str) -> np.ndarray:
        return np.array(self.encode(text), dtype=np.int64)

    def unknown(self, text: str) -> list[str]:
        return sorted({t for t in self.split(text) if t not in self.index})

    def encode_prompt(self, text: str) -> list[int]:
        """Ids of a prompt; words outside the vocabulary read as `<unk>`, as in training."""
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        decoder = self.decoder()
        return "".join(decoder.push(i) for i in ids)

    def decoder(self, prefix: str = "") -> WordDecoder:
        """An incremental decoder that continues `prefix` (spacing after its last token)."""
        decoder = WordDecoder(self)
        for token_id in self.encode(prefix):
            decoder.push(token_id)
        if prefix[-1:].isspace() and not prefix.endswith("\n"):  # the newline is a token
            decoder.space()
        return decoder

    def start_ids(self) -> list[int]:
        return [self.index["\n"]] if "\n" in self.index else [1]

    def safe_cut(self, text: str) -> int:
        return max(text.rfind(" "), text.rfind("\n")) + 1

    def first_token_chars(self, text: str) -> int:
        match = WORD_RE.search(text.lower() if self.lowercase else text)
        return match.end() if match else 0

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "tokens": self.tokens[1:],
            "lowercase": self.lowercase,
            "attach_left": sorted(self.attach_left),
            "attach_right": sorted(self.attach_right),
            "toggles": sorted(self.toggles),
            "casing": self.casing,
            "capitalize_lines": self.capitalize_lines,
        }

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / FILENAME, self.to_json())

    def fingerprint(self) -> str:
        return _sha256_json(self.to_json())


def _count_spacing(text: str, spacing: dict, shapes: Counter) -> None:
    """For each punctuation mark: is it spaced from a letter or digit before and after it, and is
    it used as an opening mark (space before, word after) or a closing one?"""
    for m in re.finditer(r"[^\w\s]|_", text):
        mark, at = m.group(), m.start()
        before = text[at - 1] if at else "\n"
        after = text[at + 1] if at + 1 < len(text) else "\n"
        row = spacing.setdefault(mark, [0, 0, 0, 0])
        if before.isalnum() or (at >= 2 and before == " " and text[at - 2].isalnum()):
            row[0 if before == " " else 1] += 1
        if after.isalnum() or (after == " " and text[at + 2 : at + 3].isalnum()):
            row[2 if after == " " else 3] += 1
        if before.isspace() and after.isalnum():
            shapes[f"{mark} open"] += 1
        elif after.isspace() and not before.isspace() and before != mark:
            shapes[f"{mark} close"] += 1
        else:
            shapes[f"{mark} other"] += 1


class WordDecoder:
    """Turns word tokens back into prose, one token at a time.

    A space goes between two tokens unless the first attaches to the right or the second to the
    left (by the rules learned in training), or they are two digits of one number. It is also put
    back wherever joining would make the text split into different tokens, so that
    `encode(decode(ids)) == ids` for any ids without `<unk>`.
    """

    def __init__(self, tokenizer: WordTokenizer):
        self.tok = tokenizer
        self.line_break()
        self.sentence_start = False
        self.paragraph = True  # at the start of the text or of a paragraph: capitalise

    def line_break(self) -> None:
        self.run: list[str] = []  # tokens since the last space or newline, glued together
        self.glue_next = True  # no space before the next token
        self.open: set[str] = set()  # toggles opened and not yet closed on this line
        self.line_start = True
        self.paragraph = False

    def space(self) -> None:
        self.run, self.glue_next = [], True

    def push(self, token_id: int) -> str:
        tok = self.tok
        token = tok.tokens[token_id] if token_id else UNK_TEXT
        if token == "\n":
            paragraph = self.line_start
            self.line_break()
            self.paragraph = paragraph
            return "\n"
        closing = token in tok.toggles and token in self.open
        glue = self.glue_next or token in tok.attach_left or closing
        if self.run and self.run[-1].isdigit() and token.isdigit():
            glue = True
        if glue and self.run and WORD_RE.findall("".join(self.run) + token) != [*self.run, token]:
            glue = False  # joined, the text would read as other tokens (don + ' + t -> don't)
        text = tok.casing.get(token, token) if tok.lowercase else token
        if tok.lowercase and text[0].isalpha() and self._capital_due():
            text = text[0].upper() + text[1:]
        if text[0].isalpha():
            self.sentence_start = self.line_start = self.paragraph = False
        elif token in SENTENCE_END:
            self.sentence_start = True
        if glue:
            self.run.append(token)
        else:
            self.run = [token]
            text = " " + text
        if token in tok.toggles:
            (self.open.discard if closing else self.open.add)(token)
            self.glue_next = not closing
        else:
            self.glue_next = token in tok.attach_right
        return text

    def banned(self) -> list[int]:
        return []

    def _capital_due(self) -> bool:
        return (
            self.sentence_start or self.paragraph or (self.line_start and self.tok.capitalize_lines)
        )

    def flush(self) -> str:
        return ""


class PieceDecoder:
    """Maps pieces to bytes and prints only whole characters."""

    def __init__(self, tokenizer: SentencePieceTokenizer):
        self.tok = tokenizer
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
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

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}
META = "\u2581"  # sentencepiece's visible space, which a text may also contain literally


class SentencePieceTokenizer:
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

    @property
    def vocab_size(self) -> int:
        return len(self.piece_bytes)

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

    def encode_array(self, text: str) -> np.ndarray:
        return np.array(self.encode(text), dtype=np.int64)

    def unknown(self, text: str) -> list[str]:
        return []  # byte fallback: every text has pieces

    def encode_prompt(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.piece_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def decoder(self, prefix: str = "") -> PieceDecoder:
        return PieceDecoder(self)

    def start_ids(self) -> list[int]:
        return self.encode("\n")

    def safe_cut(self, text: str) -> int:
        return text.rfind("\n") + 1  # the newline is a piece of its own

    def first_token_chars(self, text: str) -> int:
        ids = self.encode(text[:64])
        if not ids:
            return 0
        first = self.piece_bytes[ids[0]]
        return len(text.encode()[: len(first)].decode("utf-8", errors="ignore"))

    def to_json(self) -> dict:
        return {"kind": self.kind, "model": SPM_FILENAME, "vocab_size": self.vocab_size}

    def save(self, folder: Path) -> None:
        atomic_write(Path(folder) / SPM_FILENAME, lambda tmp: Path(tmp).write_bytes(self.proto))
        atomic_write_json(Path(folder) / FILENAME, self.to_json())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.proto).hexdigest()


Tokenizer = CharTokenizer | WordTokenizer | SentencePieceTokenizer


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """The non-empty lines of a text that arrives in chunks."""
    carry = ""
    for chunk in chunks:
        lines = (carry + chunk).split("\n")
        carry = lines.pop()
        yield from (line for line in lines if line)
    if carry:
        yield carry


def _sha256_json(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def train_tokenizer(config: TokenizerConfig, chunks: Iterable[str], seed: int = 0) -> Tokenizer:
    """A tokenizer of `config.kind` trained on the text (given as an iterable of chunks).

    Raises:
        DataError: when the text is empty.
        UsageError: when the vocabulary size cannot be reached on this text.
    """
    if config.kind == "char":
        return CharTokenizer.train(chunks)
    if config.kind == "word":
        return WordTokenizer.train(chunks, config.vocab_size, config.lowercase)
    return SentencePieceTokenizer.train(config.kind, chunks, config.vocab_size, seed)


def load_tokenizer(folder: Path) -> Tokenizer:
    """The tokenizer saved in `folder` (a run directory or a cache entry).

    Raises:
        DataError: when its files are missing or damaged.
    """
    path = Path(folder) / FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kind = data.get("kind")
        if kind == "char":
            return CharTokenizer(data["chars"])
        if kind == "word":
            return WordTokenizer(
                data["tokens"],
                data["lowercase"],
                data["attach_left"],
                data["attach_right"],
                data["toggles"],
                data["casing"],
                data["capitalize_lines"],
            )
        if kind in ("bpe", "unigram"):
            return SentencePieceTokenizer(kind, (Path(folder) / SPM_FILENAME).read_bytes())
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is missing or damaged ({exc}); train the run again") from None
