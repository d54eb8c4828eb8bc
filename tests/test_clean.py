"""Boilerplate stripping on real Gutenberg files of every era, and decoding."""

from __future__ import annotations

import unicodedata

import pytest

from authorgen.clean import (
    clean_text,
    decode,
    normalize,
    read_header,
    remove_illustrations,
    strip_boilerplate,
    unwrap_paragraphs,
)
from authorgen.errors import DataError
from helpers import data_file
from texts import FRENCH, POLISH

# file, first and last line of the body (stripped), era
BODIES = [
    (
        "pg1342-pride-and-prejudice.txt",
        "PRIDE AND PREJUDICE",
        "her into Derbyshire, had been the means of uniting them.",
    ),  # old, CRLF
    (
        "pg76-adventures-of-huckleberry-finn.txt",
        "ADVENTURES OF HUCKLEBERRY FINN",
        "THE END. YOURS TRULY, HUCK FINN.",
    ),  # old, two-line "End of" footer
    (
        "pg11-alices-adventures-in-wonderland.txt",
        "ALICE’S ADVENTURES IN WONDERLAND",
        "THE END",
    ),  # old, BOM, curly apostrophes in the markers
    (
        "pg1661-the-adventures-of-sherlock-holmes.txt",
        "THE ADVENTURES OF SHERLOCK HOLMES by ARTHUR CONAN DOYLE",
        "Walsall, where I believe that she has met with considerable success.",
    ),  # 1990s
    (
        "pg98-a-tale-of-two-cities.txt",
        "A TALE OF TWO CITIES",
        "far, far better rest that I go to than I have ever known.”",
    ),  # new, LF
    (
        "pg1400-great-expectations.txt",
        "Great Expectations",
        "from her.",
    ),  # new, LF; [Illustration] went
    (
        "pg51060-the-narrative-of-arthur-gordon-pym.txt",
        "THE NARRATIVE OF ARTHUR GORDON PYM.",
        "transcription.]",
    ),  # new, CRLF, BOM
    (
        "pg14155-madame-bovary.txt",
        "Gustave Flaubert",
        "Il vient de recevoir la croix d'honneur.",
    ),  # new, French, indented END marker
]


@pytest.mark.parametrize(("name", "first", "last"), BODIES, ids=[b[0][:12] for b in BODIES])
def test_each_era_strips_to_exactly_the_body(name, first, last):
    body, report, _ = clean_text(data_file(name).read_bytes())
    lines = body.split("\n")
    assert lines[0].strip() == first
    assert lines[-2].strip() == last and lines[-1] == ""  # ends with one newline
    assert "gutenberg" not in body.lower()
    assert "\r" not in body and "\ufeff" not in body
    assert unicodedata.is_normalized("NFC", body)
    assert len(report.markers) == 2
    assert report.cut_head_lines > 20 and report.cut_tail_lines > 0


def test_produced_by_credits_are_cut_and_recorded():
    body, report, _ = clean_text(data_file("pg76-adventures-of-huckleberry-finn.txt").read_bytes())
    assert report.credits.startswith("Produced by David Widger")
    assert "Internet Wiretap" in report.credits  # the credit's second line went with it
    assert "Produced by" not in body


def test_text_without_boilerplate_is_kept():
    raw = data_file("tinyshakespeare.txt").read_bytes()
    body, report, meta = clean_text(raw)
    assert report.markers == [] and report.cut_head_lines == 0
    assert body.split("\n")[0] == "First Citizen:"
    assert [line.rstrip() for line in raw.decode().split("\n")] == body.split("\n")
    assert meta == {"title": None, "author": None, "language": None, "ebook": None}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "pg14155-madame-bovary.txt",
            {
                "title": "Madame Bovary",
                "author": "Gustave Flaubert",
                "language": "fr",
                "ebook": "14155",
            },
        ),
        (
            "pg1661-the-adventures-of-sherlock-holmes.txt",
            {
                "title": "The Adventures of Sherlock Holmes",
                "author": "Arthur Conan Doyle",
                "language": None,
                "ebook": "1661",
            },
        ),
    ],
)
def test_header_metadata(name, expected):
    text = normalize(decode(data_file(name).read_bytes())[0])
    assert read_header(text) == expected


def test_normalize_handles_bom_crlf_cr_and_nfc():
    assert normalize("\ufeffa\r\nb\rc e\u0301") == "a\nb\nc é"


def test_decode_uses_the_declared_encoding_reading_latin1_as_cp1252():
    latin = "Character set encoding: ISO-8859-1\n\nVoilà l'été".encode("latin-1")
    assert decode(latin) == ("Character set encoding: ISO-8859-1\n\nVoilà l'été", "latin-1")
    # Windows quotes in a file that says Latin-1, as many old Gutenberg files do
    quoted = "Character set encoding: ISO-8859-1\n\n“Voilà,” dit-il".encode("cp1252")
    assert decode(quoted) == ("Character set encoding: ISO-8859-1\n\n“Voilà,” dit-il", "cp1252")
    ascii_said = "Character set encoding: US-ASCII\n\nMoże być".encode("cp1250")  # it is not
    with pytest.raises(DataError, match="cp1250"):
        decode(ascii_said)
    koi = "Character set encoding: KOI8-R\n\nМой дядя".encode("koi8-r")
    assert decode(koi) == ("Character set encoding: KOI8-R\n\nМой дядя", "koi8-r")


@pytest.mark.parametrize(
    "name",
    [
        "pg11-alices-adventures-in-wonderland.txt",
        "pg1400-great-expectations.txt",
        "pg14155-madame-bovary.txt",
        "pg51060-the-narrative-of-arthur-gordon-pym.txt",
        "pg98-a-tale-of-two-cities.txt",
    ],
)
def test_gutenberg_books_in_cp1252_or_latin1_clean_like_their_utf8(name):
    raw = data_file(name).read_bytes()
    text = raw.decode("utf-8-sig")
    assert any(ord(ch) > 127 for ch in text)  # the test means something only then
    body, report, _ = clean_text(raw)
    assert report.encoding == "utf-8"
    windows = text.encode("cp1252")
    assert clean_text(windows)[0] == body
    c1 = any(0x80 <= b <= 0x9F for b in windows)
    assert clean_text(windows)[1].encoding == ("cp1252" if c1 else "latin-1")
    if not c1:  # no Windows-only characters: the same bytes are Latin-1
        assert clean_text(text.encode("latin-1"))[0] == body


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        (POLISH, "cp1250"),  # Windows Polish: "by³" for "był", "mo¿e" for "może"
        (POLISH, "iso-8859-2"),
        ("Zażółć gęślą jaźń.", "cp1250"),
        ("Мой дядя самых честных правил, когда не в шутку занемог.", "cp1251"),
        ("Мой дядя самых честных правил, когда не в шутку занемог.", "koi8-r"),
        ("Άνδρα μοι έννεπε, Μούσα, πολύτροπον, ὃς μάλα πολλὰ.", "cp1253"),
        (FRENCH, "mac_roman"),
        (FRENCH, "cp437"),
    ],
)
def test_other_code_pages_are_refused_with_a_way_out(text, codec):
    raw = text.encode(codec, errors="ignore")
    with pytest.raises(DataError, match=r"does not read as Latin-1 or cp1252.*iconv"):
        decode(raw)


def test_empty_and_binary_input_is_refused():
    for empty in (b"", b"  \n\n ", b"\xef\xbb\xbf\r\n"):
        with pytest.raises(DataError, match="no text left"):
            clean_text(empty)
    with pytest.raises(DataError, match="binary"):
        clean_text(b"\x89PNG\r\n\x1a\n\x00\x00")


def test_indented_end_marker_and_trailing_licence():
    text = (
        "Header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\nBody line\n\n"
        "    *** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence text\n"
    )
    body, report = strip_boilerplate(text)
    assert body == "Body line\n"
    assert report.cut_head_lines == 3  # header, START marker, blank line
    assert report.cut_tail_lines == 3  # blank line, END marker, licence


def test_illustration_markers_go_with_their_blank_line():
    text = (
        "First paragraph.\n\n[Illustration: A caption\nover two lines]\n\nSecond, with an "
        "inline [Illustration] marker.\n\n[Illustration]\n"
    )
    cleaned, count = remove_illustrations(text)
    assert count == 3
    assert cleaned == "First paragraph.\n\nSecond, with an inline marker.\n"
    assert remove_illustrations("[not an illustration]\n") == ("[not an illustration]\n", 0)


def test_illustrations_are_removed_and_counted_in_real_books():
    body, report, _ = clean_text(data_file("pg1400-great-expectations.txt").read_bytes())
    # grep -c Illustration tests/data/pg1400-great-expectations.txt says 4 (the whole book: 16)
    assert report.illustrations == 4
    assert "[Illustration" not in body
    # the paragraphs around a marker stay one blank line apart
    assert "bread ravenously.\n\n“You young dog,”" in body


PROSE = (
    "It is a truth universally acknowledged, that a single man in possession\n"
    "of a good fortune, must be in want of a wife. However little known the\n"
    "feelings or views of such a man may be on his first entering a\n"
    "neighbourhood, this truth is so well fixed in the minds of the\n"
    "surrounding families, that he is considered the rightful property of\n"
    "some one or other of their daughters.\n"
)
VERSE = (
    "Litwo! Ojczyzno moja! ty jesteś jak zdrowie:\n"
    "Ile cię trzeba cenić, ten tylko się dowie,\n"
    "Kto cię stracił. Dziś piękność twą w całej ozdobie\n"
    "Widzę i opisuję, bo tęsknię po tobie.\n"
)


def test_unwrap_joins_prose_and_keeps_verse_and_paragraph_breaks():
    text = "\n".join([PROSE] * 6) + "\n" + VERSE + "\n" + "   An indented\n   quotation.\n"
    unwrapped, joined = unwrap_paragraphs(text)
    paragraphs = unwrapped.split("\n\n")
    assert joined == 6
    assert paragraphs[0] == " ".join(PROSE.split("\n")).strip()
    assert "\n" not in paragraphs[0]
    assert paragraphs[6] == VERSE.rstrip("\n")  # verse lines stay lines
    assert paragraphs[7] == "   An indented\n   quotation.\n"
    assert unwrapped.count("\n\n") == text.count("\n\n")  # every paragraph break kept


def test_unwrap_leaves_short_line_texts_alone_and_joins_hyphens():
    assert unwrap_paragraphs(VERSE * 10) == (VERSE * 10, 0)
    hyphen = "word " * 12 + "well-\nknown " + "word " * 12 + "\nend\n"
    text = "\n".join([PROSE] * 5) + "\n" + hyphen
    unwrapped, _ = unwrap_paragraphs(text)
    assert "well-known" in unwrapped


def test_unwrap_on_a_real_book_is_recorded():
    raw = data_file("pg1342-pride-and-prejudice.txt").read_bytes()
    plain, _, _ = clean_text(raw)
    body, report, _ = clean_text(raw, unwrap=True)
    assert report.unwrap and report.unwrapped_paragraphs > 400  # 482 in the excerpt
    assert body.split() == plain.split()  # only line breaks changed into spaces
    assert body.count("\n\n") == plain.count("\n\n")


def test_markers_wrapped_over_two_lines_are_cut_whole():
    text = (
        "header\n*** START OF THE PROJECT GUTENBERG EBOOK THE COMPLETE WORKS OF\n"
        "WILLIAM SHAKESPEARE ***\n\nBody\n\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK THE COMPLETE WORKS OF\nWILLIAM SHAKESPEARE ***\n"
    )
    body, report = strip_boilerplate(text)
    assert body == "Body\n"
    assert report.markers[0].endswith("OF WILLIAM SHAKESPEARE ***")


def test_a_long_paragraph_that_opens_like_credits_is_the_books_own():
    paragraph = "Produced by the committee, which met\n" + "and met again\n" * 7
    text = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n" + paragraph + "\nBody\n"
    body, report = strip_boilerplate(text)
    assert body.startswith("Produced by the committee") and report.credits is None
