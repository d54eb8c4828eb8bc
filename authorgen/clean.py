"""Turn raw bytes into clean text: decode, normalise, strip Project Gutenberg boilerplate.

Pure functions, no I/O. `clean_text(raw)` is what the corpus uses; `strip_boilerplate(text)`
returns the body and a report of what it cut, stored in corpus.json as the audit trail.

Gutenberg files come in several eras (see ../shared/corpora/README.md):
- new (2020s) and old (2002-2012): the body sits between `*** START OF THE/THIS PROJECT GUTENBERG
  EBOOK ... ***` and `*** END OF ... ***` (the END line may be indented); old files often put an
  `End of the Project Gutenberg EBook of ...` line, sometimes wrapped over two lines, before END;
- 1990s: a long legal header that ends with `*END*THE SMALL PRINT! ...*END*` and a one-line
  footer `End of The Project Gutenberg Etext of ...`.
A "Produced by ..." credit paragraph usually opens the body; it is cut too. Illustration markers
(`[Illustration: ...]`) go as well, and `unwrap=True` joins hard-wrapped prose lines.
"""

from __future__ import annotations

import itertools
import re
import string
import unicodedata
from dataclasses import asdict, dataclass, field

from authorgen.errors import DataError

_START_RES = [
    re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG E-?BOOK", re.I),
    re.compile(r"^\s*\*+\s*END\s*\**\s*THE SMALL PRINT", re.I),
]
_END_RES = [
    re.compile(r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG E-?BOOK", re.I),
    re.compile(r"^\s*End of (the )?Project Gutenberg", re.I),
]
# Credits that open the body: "Produced by ...", "E-text prepared by ...", "Transcribed by ...".
_CREDIT_RE = re.compile(
    r"^\s*(Produced by|E-?text prepared by|This e-?text was (produced|prepared) by|"
    r"Transcribed (from .* )?by)\b",
    re.I,
)
_CREDIT_SEARCH_PARAGRAPHS = 3
_CREDIT_MAX_LINES = 6  # a longer paragraph that opens "Produced by" is the book's own text

_LANGUAGES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "polish": "pl",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "latin": "la",
    "finnish": "fi",
    "russian": "ru",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "greek": "el",
    "czech": "cs",
    "hungarian": "hu",
    "esperanto": "eo",
    "chinese": "zh",
    "japanese": "ja",
    "catalan": "ca",
    "welsh": "cy",
    "irish": "ga",
    "tagalog": "tl",
}
_HEADER_ENCODING_RE = re.compile(rb"Character set encoding:\s*([A-Za-z0-9_\-]+)", re.I)
# Transcribers' notes of pictures: "[Illustration]", "[Illustration: caption\n over lines]".
_ILLUSTRATION_RE = re.compile(r"\[(?:Illustration|Frontispiece)\b[^\[\]]{0,2000}\]", re.I)
_GONE = "\x00"  # stands where a marker was, until its line is tidied


@dataclass
class CleaningReport:
    """What `strip_boilerplate` removed; saved per work in corpus.json."""

    encoding: str = "utf-8"  # what the raw bytes were decoded from (see `decode`)
    cut_head_lines: int = 0
    cut_tail_lines: int = 0
    markers: list[str] = field(default_factory=list)
    credits: str | None = None
    illustrations: int = 0  # [Illustration] markers removed
    unwrap: bool = False  # whether hard-wrapped paragraphs were joined (fetch --unwrap)
    unwrapped_paragraphs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# Byte values of text in a Western Windows or ISO code page: cp1252 is ISO-8859-1 (Latin-1) with
# printable characters in place of the C1 controls 0x80-0x9f, so it decodes both (as browsers do).
_LATIN1_NAMES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1"}
# Non-letters Western prose uses; anything else outside ASCII (¹ ³ ± ¦ ...) suggests another code
# page read wrongly: Polish cp1250 "by³" (był), "mo¿e" (może), Russian cp1251, MacRoman.
_WESTERN_MARKS = set("‘’‚“”„–—…«»‹›•·°§¶†‡‰™£€¢¥¡¿©®½¼¾×÷\xa0\xad´¨ªº")
# ... and those of them that never stand between two letters (Polish "mo¿e", cp437 "‚t‚")
_NOT_INSIDE_WORDS = set("‚„¡¿¶§°½¼¾×÷¨´ªº")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")
_MAX_ACCENTED_SHARE = 0.3  # French ~4%, German ~2%, Icelandic ~15% of letters; Cyrillic ~100%


def _reads_as_western(text: str) -> bool:
    """Whether `text` (bytes decoded as cp1252) reads as Western European prose: every character
    outside ASCII is a letter or a mark such prose uses, none of ¿ ‚ ¶ ... sits inside a word, no
    capital sits inside a lowercase word, and accented letters are a minority of letters."""
    accented = 0
    for m in _NON_ASCII_RE.finditer(text):
        ch, i = m.group(), m.start()
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if ch.isalpha():
            accented += 1
            if ch.isupper() and before.islower() and after.islower():
                return False  # MacRoman "ŽtŽ" for "été"
        elif ch not in _WESTERN_MARKS or (
            ch in _NOT_INSIDE_WORDS and before.isalpha() and after.isalpha()
        ):
            return False
    letters = accented + sum(map(text.count, string.ascii_letters))
    return accented <= _MAX_ACCENTED_SHARE * letters


def decode(raw: bytes) -> tuple[str, str]:
    """Decode `raw`: as UTF-8 (a BOM is dropped); else in the encoding its Gutenberg header
    declares (Latin-1 read as its superset cp1252); else as cp1252 when the text reads as
    Western European prose (see `_reads_as_western`), which is what older Gutenberg files and
    Windows text editors wrote.

    Returns:
        The text and the encoding used ("utf-8", the declared name, "cp1252" or "latin-1").

    Raises:
        DataError: when the bytes are none of these; the message says how to convert them.
    """
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        bad = exc.start
    declared = _HEADER_ENCODING_RE.search(raw[:5000])
    name = declared.group(1).decode("ascii").lower() if declared else None
    if name is not None and name not in _LATIN1_NAMES:
        try:
            return raw.decode(name), name
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:  # 0x81 0x8d 0x8f 0x90 0x9d: not Western Windows text
        text = None
    if text is not None and (name in _LATIN1_NAMES or _reads_as_western(text)):
        return text, "cp1252" if re.search(rb"[\x80-\x9f]", raw) else "latin-1"
    if name in _LATIN1_NAMES:  # declared, with bytes cp1252 leaves undefined
        return raw.decode("latin-1"), "latin-1"
    raise DataError(
        f"text is not UTF-8 (bad byte at offset {bad}) and does not read as Latin-1 or cp1252; "
        "convert it to UTF-8 first, e.g. iconv -f cp1250 -t utf-8 FILE > NEW.txt (cp1250 or "
        "iso-8859-2 for Polish, cp1251 for Russian)"
    )


def normalize(text: str) -> str:
    """LF line endings, no BOM, Unicode NFC (so "é" is always one code point)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def _find(lines: list[str], patterns: list[re.Pattern], start: int, stop: int) -> int | None:
    for i in range(start, stop):
        if any(p.match(lines[i]) for p in patterns):
            return i
    return None


def _trim_blank(lines: list[str], lo: int, hi: int) -> tuple[int, int]:
    while lo < hi and not lines[lo].strip():
        lo += 1
    while hi > lo and not lines[hi - 1].strip():
        hi -= 1
    return lo, hi


def _marker_continues(lines: list[str], i: int) -> int:
    """1 when the `*** START/END ... ***` marker on line i wraps onto the next line, else 0."""
    line = lines[i].strip()
    if not line.startswith("***") or line.endswith("***") or i + 1 >= len(lines):
        return 0
    return 1 if lines[i + 1].strip().endswith("***") else 0


def _credit_paragraph(lines: list[str], lo: int, hi: int) -> tuple[int, int] | None:
    """The span of a "Produced by" paragraph among the first few paragraphs, if any."""
    i, seen = lo, 0
    while i < hi and seen < _CREDIT_SEARCH_PARAGRAPHS:
        while i < hi and not lines[i].strip():
            i += 1
        end = i
        while end < hi and lines[end].strip():
            end += 1
        if i < hi and _CREDIT_RE.match(lines[i]) and end - i <= _CREDIT_MAX_LINES:
            return i, end
        i, seen = end, seen + 1
    return None


def strip_boilerplate(text: str) -> tuple[str, CleaningReport]:
    """Remove the Project Gutenberg header, footer and licence from normalised `text`.

    Text without Gutenberg markers comes back unchanged except for trimmed blank lines at both
    ends and trailing spaces on each line.

    Returns:
        The body and a report of what was cut.
    """
    lines = [line.rstrip() for line in text.split("\n")]
    if lines and not lines[-1]:
        lines.pop()  # the final newline ends the last line; it does not start another
    report = CleaningReport()
    lo, hi = 0, len(lines)

    # The START marker is in the head of the file; take the last one there (some files repeat it).
    head_limit = min(len(lines), max(1, len(lines) // 2))  # an empty file has no lines
    start = None
    i = _find(lines, _START_RES, 0, head_limit)
    while i is not None:
        start = i
        i = _find(lines, _START_RES, i + 1, head_limit)
    if start is not None:
        lo = start + 1 + _marker_continues(lines, start)
        report.markers.append(" ".join(line.strip() for line in lines[start:lo]))
    end = _find(lines, _END_RES, lo, hi)
    if end is not None:
        stop = end + 1 + _marker_continues(lines, end)
        report.markers.append(" ".join(line.strip() for line in lines[end:stop]))
        hi = end

    lo, hi = _trim_blank(lines, lo, hi)
    if start is not None:
        credit = _credit_paragraph(lines, lo, hi)
        if credit is not None:
            report.credits = " ".join(line.strip() for line in lines[credit[0] : credit[1]])
            del lines[credit[0] : credit[1]]
            hi -= credit[1] - credit[0]
            lo, hi = _trim_blank(lines, lo, hi)
            report.cut_head_lines += credit[1] - credit[0]
    report.cut_head_lines += lo
    report.cut_tail_lines = len(lines) - hi
    return "\n".join(lines[lo:hi]) + "\n" if hi > lo else "", report


def remove_illustrations(text: str) -> tuple[str, int]:
    """Remove `[Illustration...]` markers; a line that held only markers goes, with one of the
    blank lines around it, so paragraphs stay one blank line apart.

    Returns:
        The text and the number of markers removed.
    """
    text, count = _ILLUSTRATION_RE.subn(_GONE, text)
    if not count:
        return text, 0
    lines = text.split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _GONE not in line:
            kept.append(line)
            continue
        rest = " ".join(line.replace(_GONE, " ").split()) if line.strip(_GONE + " \t") else ""
        if rest:
            kept.append(line[: len(line) - len(line.lstrip())] + rest)
        elif kept and not kept[-1].strip() and (i + 1 == len(lines) or not lines[i + 1].strip()):
            kept.pop()  # the marker was a paragraph of its own: drop one of its blank lines
    text = "\n".join(kept).strip("\n")  # a marker that opened or closed the text leaves no gap
    return (text + "\n" if text else ""), count


def _wrap_width(paragraphs: list[list[str]]) -> int:
    """The width the text was hard-wrapped at: a high percentile of the lengths of lines
    inside multi-line paragraphs (0 when there are too few to tell)."""
    lengths = sorted(len(line) for para in paragraphs if len(para) > 1 for line in para[:-1])
    if len(lengths) < 20:
        return 0
    return lengths[int(len(lengths) * 0.95)]


def _is_wrapped(para: list[str], width: int) -> bool:
    """True when every line but the last ends only because the next word would not fit.

    Verse fails this test: its lines end early although the next word would have fitted.
    """
    slack = max(4, width // 8)
    for line, following in itertools.pairwise(para):
        if line[:1].isspace() or following[:1].isspace():
            return False  # indented lines: verse, block quotes, tables
        if len(line) + 1 + len(following.split()[0]) <= width - slack:
            return False
    return True


# fetch joins hard-wrapped prose lines unless told --no-unwrap: a run trained on the lines as
# Gutenberg wraps them breaks its samples' lines every 75 characters or so, mid-sentence
# (13.4 line breaks per 1,000 characters against 0.4 unwrapped, the author's pages 0.2),
# and reads no more like the author for it (benchmarks/README.md, realism)
UNWRAP = True


def unwrap_paragraphs(text: str) -> tuple[str, int]:
    """Join the hard-wrapped lines of prose paragraphs into one line each.

    Blank lines (paragraph breaks) are kept, and so is every paragraph that does not look
    hard-wrapped: verse, indented quotes, tables, headings. A text whose lines are too short to
    have been wrapped (under 50 characters at the 95th percentile) is left as it is.

    Returns:
        The text and the number of paragraphs joined.
    """
    # runs of blank lines and of text lines, in order: (is_text, lines)
    blocks = [
        (is_text, list(run))
        for is_text, run in itertools.groupby(text.split("\n"), key=lambda ln: bool(ln.strip()))
    ]
    width = _wrap_width([run for is_text, run in blocks if is_text])
    if width < 50:
        return text, 0
    out: list[str] = []
    joined = 0
    for is_text, run in blocks:
        if not (is_text and len(run) > 1 and _is_wrapped(run, width)):
            out.extend(run)
            continue
        merged = run[0]
        for line in run[1:]:
            # "well-" + "known", "said--" + "and": a line-final hyphen joins without a space
            merged += line if merged.endswith("-") else " " + line
        out.append(merged)
        joined += 1
    return "\n".join(out), joined


def read_header(text: str) -> dict[str, str | None]:
    """Title, author, language (ISO 639-1 where known) and ebook number from a Gutenberg header."""
    head = text[:20000]
    meta: dict[str, str | None] = {"title": None, "author": None, "language": None, "ebook": None}
    for key in ("title", "author", "language"):
        m = re.search(rf"^{key}:[ \t]*(.+(?:\n[ \t]+\S.*)*)", head, re.I | re.M)
        if m:
            meta[key] = " ".join(m.group(1).split())
    if not meta["title"]:  # 1990s files: "The Project Gutenberg Etext of TITLE[, by AUTHOR]"
        m = re.search(
            r"Project Gutenberg(?:'s)? E-?(?:text|book) of (.+?)(?:, by (.+))?$", head, re.I | re.M
        )
        if m:
            meta["title"] = m.group(1).strip()
            meta["author"] = meta["author"] or (m.group(2) or "").strip() or None
    if not meta["author"]:
        m = re.search(r"in our series by (.+)$", head, re.I | re.M)
        if m:
            meta["author"] = m.group(1).strip()
    if meta["language"]:
        meta["language"] = _LANGUAGES.get(meta["language"].lower(), meta["language"])
    m = re.search(r"\[(?:e-?book|etext)\s*#(\d+)\]", head, re.I)
    if m:
        meta["ebook"] = m.group(1)
    return meta


def clean_text(
    raw: bytes, unwrap: bool = False
) -> tuple[str, CleaningReport, dict[str, str | None]]:
    """Decode, normalise and strip `raw`, remove illustration markers, and with `unwrap` join
    hard-wrapped paragraphs.

    Returns:
        The clean body, the cleaning report and the header metadata (see `read_header`).

    Raises:
        DataError: when the bytes cannot be decoded or hold no text once cleaned.
    """
    if b"\x00" in raw[:8192]:
        raise DataError("this looks like a binary file, not text; give a plain .txt file")
    text, encoding = decode(raw)
    text = normalize(text)
    body, report = strip_boilerplate(text)
    report.encoding = encoding
    body, report.illustrations = remove_illustrations(body)
    if unwrap:
        body, report.unwrapped_paragraphs = unwrap_paragraphs(body)
        report.unwrap = True
    if not body.strip():
        raise DataError("no text left after cleaning (the file is empty or only boilerplate)")
    return body, report, read_header(text)
