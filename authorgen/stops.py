"""Where a sample ends: `StopPolicy` decides it and which of the text is safe to print yet.

A sample ends at the earliest of: a stop string (not printed), with `until` the first sentence
or paragraph end at or after `length` characters, and the most characters it may have. Text
that a stop may still cut is held back, so a stream never shows what the sample then drops.
"""

from __future__ import annotations

import re

from authorgen.config import SampleConfig

# A sentence ends with . ! ? or … and its closing quotes and brackets (French » after a space
# too), before a newline or before spaces and something other than », unless the word before a
# single full stop is a title or an initial.
_CLOSERS = "(?:[ \u00a0\u202f]?»|[\"'”’)\\]])*"
SENTENCE_END = re.compile(r"[.!?…]+" + _CLOSERS + r"(?=\n|\s+[^\s»])")
TRAILING_TERMINATOR = re.compile(r"[.!?…]+" + _CLOSERS + r"\s*$")  # may still become an end
_CLOSING = " \u00a0\u202f\"'”’»)]"
PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
TRAILING_NEWLINE = re.compile(r"\n[ \t]*$")
ABBREVIATIONS = frozenset(
    re.findall(
        r"\w+",
        "Mr Mrs Ms Dr St Mt Jr Sr Messrs Rev Col Gen Capt Lt Sgt "
        "Prof Hon Esq vs viz M Mme Mlle MM Mgr Pr cf",
    )
)
LAST_WORD = re.compile(r"(\w+)$")


def _is_sentence_end(text: str, match: re.Match) -> bool:
    if match.group().rstrip(_CLOSING) != ".":
        return True
    word = LAST_WORD.search(text, 0, match.start())
    if word is None:
        return True
    word_text = word.group(1)
    return not (word_text in ABBREVIATIONS or (len(word_text) == 1 and word_text.isupper()))


class StopPolicy:
    """Decides where a sample ends and which of its text is safe to print yet.

    Text comes in pieces; `feed` returns what may be printed now. Text that might still be cut
    (the start of a stop string, a full stop that may end the sentence) is held back until it is
    known. The end is the earliest of: a stop string (not printed), with `until` the first
    sentence or paragraph end at or after `length` characters, and `config.limit` characters.
    """

    def __init__(self, config: SampleConfig):
        self.config = config
        self.text = ""
        self.sent = 0  # characters of text released
        self.end: int | None = None
        self.reason = ""
        self.hold = max((len(s) - 1 for s in config.stop), default=0)

    @property
    def done(self) -> bool:
        return self.end is not None

    def feed(self, piece: str) -> str:
        self.text += piece
        self._find_end()
        return self._release()

    def close(self, reason: str) -> str:
        """End now (the model can give no more): release what is left."""
        if self.end is None:
            self.end, self.reason = min(len(self.text), self.config.limit), reason
        return self._release()

    def _find_end(self) -> None:
        cfg, text = self.config, self.text
        found = []
        for stop in cfg.stop:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at >= 0:
                found.append((at, "stop"))
        if cfg.until == "sentence" and len(text) > cfg.length:
            for m in SENTENCE_END.finditer(text, max(0, cfg.length - 16)):
                if m.end() >= cfg.length and _is_sentence_end(text, m):
                    found.append((m.end(), "sentence"))
                    break
        elif cfg.until == "paragraph" and len(text) > cfg.length:
            for m in PARAGRAPH_END.finditer(text, max(0, cfg.length - 16)):
                if m.start() >= cfg.length:
                    found.append((m.start(), "paragraph"))
                    break
        if len(text) >= cfg.limit:
            found.append((cfg.limit, "length"))
        if found:
            self.end, self.reason = min(found)

    def _release(self) -> str:
        if self.end is not None:
            safe = self.end
        else:
            safe = min(len(self.text) - self.hold, self.config.limit)
            trailing = {"sentence": TRAILING_TERMINATOR, "paragraph": TRAILING_NEWLINE}.get(
                self.config.until or ""
            )
            m = trailing.search(self.text) if trailing else None
            if m:
                safe = min(safe, m.start())
        if safe <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : safe], safe
        return out
