"""Words and punctuation, with spacing and capitals learned from the training text."""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from authorgen.errors import DataError
from authorgen.tokenizer.base import UNK_TEXT, BaseTokenizer

# Words: letters with inner apostrophes (don't, l'homme, aujourd'hui), single digits (so every
# number is spelled from ten known tokens), any other visible character alone, and the newline.
WORD_RE = re.compile(r"\n|[^\W\d_]+(?:['’][^\W\d_]+)*|\d|\S")
SENTENCE_END = frozenset(".!?…")
# a word after a letter, digit, comma, semicolon or colon and a space: not a sentence start, so
# its capital (London, I) is its own
MID_SENTENCE_WORD_RE = re.compile(r"(?<=[\w,;:] )[^\W\d_]+(?:['’][^\W\d_]+)*")


class WordTokenizer(BaseTokenizer):
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

    def unknown(self, text: str) -> list[str]:
        return sorted({t for t in self.split(text) if t not in self.index})

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

    def clone(self) -> WordDecoder:
        """An independent copy, to try a token without committing to it."""
        other = copy.copy(self)
        other.run, other.open = list(self.run), set(self.open)
        return other

    def _capital_due(self) -> bool:
        return (
            self.sentence_start or self.paragraph or (self.line_start and self.tok.capitalize_lines)
        )

    def flush(self) -> str:
        return ""
