"""Boilerplate stripping on real Gutenberg files of every era, and decoding."""

from __future__ import annotations

import unicodedata

import pytest

from authorgen.clean import clean_text, decode, normalize, read_header, strip_boilerplate
from authorgen.errors import DataError
from helpers import shared_file

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
    ("pg1400-great-expectations.txt", "[Illustration]", "from her."),  # new, LF
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
    body, report, _ = clean_text(shared_file(name).read_bytes())
    lines = body.split("\n")
    assert lines[0].strip() == first
    assert lines[-2].strip() == last and lines[-1] == ""  # ends with one newline
    assert "gutenberg" not in body.lower()
    assert "\r" not in body and "\ufeff" not in body
    assert unicodedata.is_normalized("NFC", body)
    assert len(report.markers) == 2
    assert report.cut_head_lines > 20 and report.cut_tail_lines > 0


def test_produced_by_credits_are_cut_and_recorded():
    body, report, _ = clean_text(
        shared_file("pg76-adventures-of-huckleberry-finn.txt").read_bytes()
    )
    assert report.credits.startswith("Produced by David Widger")
    assert "Internet Wiretap" in report.credits  # the credit's second line went with it
    assert "Produced by" not in body


def test_text_without_boilerplate_is_kept():
    raw = shared_file("tinyshakespeare.txt").read_bytes()
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
    text = normalize(decode(shared_file(name).read_bytes())[0])
    assert read_header(text) == expected


def test_normalize_handles_bom_crlf_cr_and_nfc():
    assert normalize("\ufeffa\r\nb\rc e\u0301") == "a\nb\nc é"


def test_decode_uses_the_declared_encoding_and_refuses_unknown_bytes():
    latin = "Character set encoding: ISO-8859-1\n\nVoilà l'été".encode("latin-1")
    assert decode(latin) == ("Character set encoding: ISO-8859-1\n\nVoilà l'été", "iso-8859-1")
    with pytest.raises(DataError, match="not UTF-8"):
        decode("Voilà l'été".encode("latin-1"))


def test_empty_and_binary_input_is_refused():
    with pytest.raises(DataError, match="no text left"):
        clean_text(b"  \n\n ")
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
