"""The `--known-words` rule: a character or subword model spells only words of its training
text (`words.py` says what a word is).

The rule (`KnownWords`) follows each sample through a small state: the word being written so
far (None once it can no longer become a known word) and whether a word may end here. A letter
is allowed when the word so far with it is still the beginning of a known word; anything else
that ends a word (space, punctuation, a digit, a new line) is allowed where a known word ends,
and anywhere outside a word. An apostrophe after letters may be inside a word (allowed when the
word can go on with it) or end it (then the word before it must be known). A token is allowed
when every character of its text is, in turn; so a subword piece like "ing the" is checked
letter by letter across the word it ends and the one it begins. Generation checks the token it
drew (`Follower.allows`: a few set lookups) and needs the whole list of tokens a state allows
only when it refuses one, or when top-k or top-p need the ban before the draw (see
`constraints.py`). That list is found once per state, by walking the tokens' texts as a trie
beside the known beginnings of words, and kept.

Byte pieces (subword models write rare characters as UTF-8 bytes) are checked when their
character is complete: the byte that would finish a character is allowed only if that
character is.
"""

from __future__ import annotations

import functools
import itertools

import torch

from authorgen.words import APOSTROPHES, LETTER, fold

MASKS_CACHED = 1 << 26  # bytes of token masks kept per run (one byte per token per state)

State = tuple[str | None, bool]  # (the word so far, folded, or None; may a word end here)
ROOT: State = ("", True)  # outside a word
OPEN: State = (None, True)  # after a word that can go on no further: it may only end


class Vocabulary:
    """Known words and, built on first use, every beginning of one."""

    def __init__(self, words: frozenset[str]):
        self.words = words
        self._prefixes: frozenset[str] | None = None

    @property
    def prefixes(self) -> frozenset[str]:
        if self._prefixes is None:
            self._prefixes = frozenset(w[:i] for w in self.words for i in range(1, len(w) + 1))
        return self._prefixes

    def step(self, state: State, ch: str) -> State | None:
        """The state after character `ch`, or None when `ch` is not allowed there."""
        word, may_end = state
        letter = _letter(ch)
        if letter is not None:
            if word is None:
                return None
            word += letter
            return (word, word in self.words) if word in self.prefixes else None
        if ch in APOSTROPHES and word and word[-1] != "'":  # after letters: inside or the end
            inner, ends = word + "'", word in self.words
            if inner in self.prefixes:
                return inner, ends
            return OPEN if ends else None
        return ROOT if may_end else None

    def read_strictly(self, state: State | None, text: str) -> State | None:
        """The state after `text`, or None if any of its characters is not allowed."""
        for ch in text:
            if state is None:
                return None
            state = self.step(state, ch)
        return state

    def read(self, state: State, text: str) -> State:
        """The state after `text` that was written whatever the rule (a prompt): a word that can
        go no further may still end."""
        for ch in text:
            state = self.step(state, ch) or (ROOT if not LETTER.match(ch) else OPEN)
        return state


class _Node:
    """A node of the trie of the tokens' texts: the tokens that end here, and what follows,
    letters grouped by the first character they fold to (`group`, once it is built)."""

    __slots__ = ("children", "ids", "letters", "others")

    def __init__(self):
        self.children: dict[str, _Node] = {}
        self.ids: list[int] = []
        self.letters: dict[str, list[tuple[str, _Node]]] = {}
        self.others: list[tuple[str, _Node]] = []  # apostrophes, then the rest

    def group(self) -> None:
        for ch, child in self.children.items():
            folded = _letter(ch)
            if folded:
                self.letters.setdefault(folded[0], []).append((ch, child))
            else:
                self.others.append((ch, child))
            child.group()
        self.others.sort(key=lambda item: _is_boundary(item[0]))


class KnownWords:
    """`--known-words` for one tokenizer and vocabulary: which tokens each state allows."""

    def __init__(self, vocabulary: Vocabulary, tokenizer):
        self.vocabulary = vocabulary
        self.size = tokenizer.vocab_size
        self.trie = _Node()
        self.byte_of: dict[int, int] = {}  # byte pieces of part of a character -> their byte
        pieces = getattr(tokenizer, "piece_bytes", None)
        self.texts = token_texts(tokenizer)
        for i, text in enumerate(self.texts):
            if text is None:  # a byte piece; a longer part of a character is never allowed
                if len(pieces[i]) == 1:
                    self.byte_of[i] = pieces[i][0]
                continue
            node = self.trie
            for ch in text:
                child = node.children.get(ch)
                if child is None:
                    child = node.children[ch] = _Node()
                node = child
            node.ids.append(i)
        self.leads = [(i, b) for i, b in self.byte_of.items() if b >= 0xC0]
        self.trie.group()
        self.continuations = [(i, b) for i, b in self.byte_of.items() if b < 0xC0]
        # how the letters of the words may be written: folded, in upper case, and every
        # letter of up to 2 UTF-8 bytes that folds to some of them ("ſ" is an "s")
        letters = {ch for word in vocabulary.words for ch in word if ch != "'"}
        spellings = {(x, c) for x in letters for c in (x, x.upper()) if fold(c) == x}
        spellings |= {
            (fold(c), c)
            for c in map(chr, range(0x80, 0x800))
            if LETTER.match(c) and set(fold(c)) <= letters
        }
        # the letters that byte pieces may write (those beyond ASCII): (folded, UTF-8)
        self._spelled = sorted((x, c.encode()) for x, c in spellings if c > "\x7f")
        vocabulary.prefixes  # noqa: B018 - built now, not at the first token
        # the tokens that begin with a character ending a word: the same after any state where
        # a word may end (all is ROOT after that character), so found once
        self._after_boundary: torch.Tensor | None = None
        self._masks: dict[State, tuple[torch.Tensor, bool]] = {}
        self._special = frozenset(tokenizer.special_ids)
        self._most = max(1, MASKS_CACHED // max(self.size, 1))

    def follow(self) -> Follower:
        return Follower(self)

    def _allowed(self, state: State, node: _Node, top: bool = False) -> list[int]:
        """The tokens below `node` of the token trie whose rest is allowed from `state`: only
        the letters that can follow the word so far are tried. At the top, only tokens that
        begin with a letter or an apostrophe (and the control tokens)."""
        out = list(node.ids)
        word, step = state[0], self.vocabulary.step
        if word is not None:
            prefixes = self.vocabulary.prefixes
            for x, group in node.letters.items():
                if word + x not in prefixes:
                    continue
                for ch, child in group:
                    after = step(state, ch)
                    if after is not None:
                        out += self._allowed(after, child)
        for ch, child in node.others:
            if top and _is_boundary(ch):
                break  # boundaries come last: `_boundary_mask` has them
            after = step(state, ch)
            if after is not None:
                out += self._allowed(after, child)
        return out

    def _boundary_mask(self) -> torch.Tensor:
        if self._after_boundary is None:
            allowed = [
                i
                for ch, child in self.trie.children.items()
                if _is_boundary(ch)
                for i in self._allowed(ROOT, child)
            ]
            self._after_boundary = torch.zeros(self.size, dtype=torch.bool)
            self._after_boundary[torch.tensor(allowed, dtype=torch.long)] = True
        return self._after_boundary

    def banned(self, state: State, device: torch.device) -> tuple[torch.Tensor, bool]:
        """A mask (V,) of the tokens not allowed after `state` (bytes that continue a character
        left allowed: see `Follower.banned`), and whether any token but those bytes and the
        control tokens is allowed."""
        entry = self._masks.get(state)
        if entry is None:
            word, may_end = state
            allowed = self._allowed(state, self.trie, top=True)
            if self.leads:
                firsts = {
                    c[0]
                    for x, c in self._spelled
                    if word is not None and word + x in self.vocabulary.prefixes
                }
                quote = self.vocabulary.step(state, "’") is not None
                for i, b in self.leads:
                    if (
                        b in firsts
                        or (quote and b == 0xE2)
                        or (may_end and _other_begins_with(bytes([b])))
                    ):
                        allowed.append(i)
            ok = (
                self._boundary_mask().clone()
                if may_end
                else torch.zeros(self.size, dtype=torch.bool)
            )
            live = bool(ok.any()) or bool(set(allowed) - self._special)
            ok[torch.tensor(allowed + [i for i, _ in self.continuations], dtype=torch.long)] = True
            if len(self._masks) >= self._most:
                self._masks.clear()
            entry = self._masks[state] = ((~ok).to(device), live)
        return entry

    def completes(self, state: State, begun: bytes) -> bool:
        """Whether the UTF-8 bytes `begun` are, or begin, a character allowed after `state`."""
        try:
            text = begun.decode("utf-8")
        except UnicodeDecodeError:  # a character begun (or broken: the decoder bans those)
            pass
        else:
            return self.vocabulary.read_strictly(state, text) is not None
        word, may_end = state
        if may_end and _other_begins_with(begun):
            return True
        if "’".encode().startswith(begun) and self.vocabulary.step(state, "’") is not None:
            return True
        return word is not None and any(
            c.startswith(begun) for x, c in self._spelled if word + x in self.vocabulary.prefixes
        )


@functools.lru_cache(maxsize=1 << 16)
def _letter(ch: str) -> str | None:
    """`ch` folded if it is a letter, else None."""
    return fold(ch) if LETTER.match(ch) else None


def _is_boundary(ch: str) -> bool:
    """Whether `ch` ends a word wherever it comes (neither a letter nor an apostrophe)."""
    return not LETTER.match(ch) and ch not in APOSTROPHES


@functools.lru_cache(maxsize=4096)
def _other_begins_with(begun: bytes) -> bool:
    """Whether some character other than a letter has a UTF-8 form beginning with `begun`."""
    size = 2 if begun[0] < 0xE0 else 3 if begun[0] < 0xF0 else 4
    left = size - len(begun)
    if left >= 3:
        return True  # a 4-byte lead: each has symbols or private-use characters
    for tail in itertools.product(range(0x80, 0xC0), repeat=left):
        try:
            ch = (begun + bytes(tail)).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not LETTER.match(ch):
            return True
    return False


class Follower:
    """One sample under `KnownWords`: its state, and the tokens it may take next."""

    def __init__(self, rule: KnownWords):
        self.rule = rule
        self.state: State = ROOT
        self.begun = b""  # the bytes of a character that byte pieces began

    def read(self, text: str) -> None:
        """Follow text written whatever the rule (the prompt)."""
        self.state = self.rule.vocabulary.read(self.state, text)

    def banned(self, device: torch.device) -> tuple[torch.Tensor, bool]:
        """A mask (V,) of the tokens not allowed next, and whether that leaves none. While a
        character is begun, a byte that goes on with it is allowed only if the character can
        still be one allowed here (and nothing else may come: the decoder bans it)."""
        mask, live = self.rule.banned(self.state, device)
        if not self.begun:
            return mask, not live
        mask = mask.clone()
        for i, byte in self.rule.continuations:
            mask[i] = not self.rule.completes(self.state, self.begun + bytes([byte]))
        return mask, all(mask[i] for i, _ in self.rule.continuations)

    def allows(self, token: int) -> bool:
        """Whether `token` may come next (one the decoder would not ban: see `banned`)."""
        byte = self.rule.byte_of.get(token)
        if byte is not None:
            begun = self.begun + bytes([byte])
            return (byte < 0xC0 and not self.begun) or self.rule.completes(self.state, begun)
        text = self.rule.texts[token]
        return text is not None and self.rule.vocabulary.read_strictly(self.state, text) is not None

    def accept(self, token: int, piece: str) -> None:
        """Take `token`, whose text came out as `piece` (empty while a character is begun)."""
        byte = self.rule.byte_of.get(token)
        self.begun = self.begun + bytes([byte]) if byte is not None and not piece else b""
        if piece:
            self.state = self.rule.vocabulary.read(self.state, piece)


def token_texts(tokenizer) -> list[str | None]:
    """Each token's text as generation prints it: None for a byte piece that is part of a
    character, "" for a control token (never printed: banned anyway)."""
    special = set(tokenizer.special_ids)
    pieces = getattr(tokenizer, "piece_bytes", None)
    out: list[str | None] = []
    for i in range(tokenizer.vocab_size):
        if i in special:
            out.append("")
        elif pieces is not None:
            try:
                out.append(pieces[i].decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        else:
            out.append(tokenizer.decode([i]))
    return out
