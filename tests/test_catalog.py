"""Reading pg_catalog.csv and choosing an author's works: pure functions, the test catalog of
tests/mirror.py (a few hundred rows, tricky ones included)."""

from __future__ import annotations

import pytest

from authorgen.errors import DataError, UsageError
from authorgen.sources.catalog import parse_person, read_catalog, select_works, title_key
from mirror import catalog_csv, catalog_rows, gzip_bytes


@pytest.fixture(scope="module")
def books():
    return read_catalog(gzip_bytes(catalog_csv(catalog_rows())))


def _ids(selection) -> list[int]:
    return [b.id for b in selection.books]


def test_people_are_parsed_with_names_dates_and_roles():
    jane = parse_person("Austen, Jane, 1775-1817")
    assert (jane.display, jane.role, jane.key) == ("Jane Austen", None, "Austen, Jane, 1775-1817")
    butler = parse_person("Butler, Samuel, 1835-1902 [Translator]")
    assert (butler.display, butler.role, butler.key) == (
        "Samuel Butler",
        "Translator",
        "Butler, Samuel, 1835-1902",
    )
    wells = parse_person("Wells, H. G. (Herbert George), 1866-1946")
    assert wells.display == "H. G. Wells" and {"herbert", "h", "1866"} <= wells.tokens
    assert parse_person("Żeromski, Stefan, 1864-1925").surname == {"zeromski"}
    assert parse_person("Austen-Leigh, James Edward").surname == {"austenleigh"}
    assert parse_person("Anonymous").display == "Anonymous"


def test_catalog_reads_gzip_and_plain_and_multiline_titles(books):
    plain = read_catalog(catalog_csv(catalog_rows()))
    assert [b.id for b in plain] == [b.id for b in books]
    assert len(books) > 300
    tale = next(b for b in books if b.id == 98)
    assert tale.title == "A Tale of Two Cities A Story of the French Revolution"
    assert tale.authors == ["Charles Dickens"] and tale.languages == ["en"]


def test_a_file_that_is_not_the_catalog_is_refused():
    with pytest.raises(DataError, match="columns"):
        read_catalog(b"id,name\n1,x\n")
    with pytest.raises(DataError, match="damaged"):
        read_catalog(b"\x1f\x8b\x08garbage")


@pytest.mark.parametrize(
    "query", ["Jane Austen", "Austen", "Austen, Jane", "jane AUSTEN", "Jane Austen 1775"]
)
def test_any_form_of_the_name_finds_jane_austen(books, query):
    selection = select_works(books, query)
    assert selection.author.key == "Austen, Jane, 1775-1817"
    # sound recording, the second edition of Pride and Prejudice, the omnibus volume and the
    # French translation are left out; Austen-Leigh and Austen Chamberlain are other people
    assert _ids(selection) == [105, 158, 161, 1342]
    assert selection.language == "en"
    reasons = {
        reason.split(" (")[0]: [b.id for b in b_] for reason, b_ in selection.left_out.items()
    }
    assert reasons["another edition of a title already chosen"] == [42671]
    assert reasons["a collected-works volume of single works already chosen"] == [31100]
    assert reasons["in another language"] == [44000]
    assert reasons["not text"] == [20686]


def test_accents_and_case_are_ignored_and_the_language_follows_the_author(books):
    mickiewicz = select_works(books, "mickiewicz")
    assert mickiewicz.language == "pl" and _ids(mickiewicz) == [27081, 31155]
    assert _ids(select_works(books, "Mickiewicz", language="EN")) == [28240]
    assert _ids(select_works(books, "Stefan Zeromski")) == [6000]
    assert _ids(select_works(books, "ŻEROMSKI")) == [6000]
    assert select_works(books, "Gustave Flaubert").language == "fr"  # 1 fr, 1 en: first wins


def test_several_authors_are_listed_not_guessed(books):
    with pytest.raises(UsageError) as info:
        select_works(books, "Alexandre Dumas")
    message = str(info.value)
    assert "matches 2 authors" in message
    assert '"Dumas, Alexandre, 1802-1870" (2 works)' in message
    assert '"Dumas, Alexandre, 1824-1895" (1 work)' in message
    assert _ids(select_works(books, "Dumas, Alexandre, 1802-1870")) == [1184, 1257]
    assert _ids(select_works(books, "Alexandre Dumas 1824")) == [3000]


def test_roles_are_left_out_unless_asked_for(books):
    dickens = select_works(books, "Charles Dickens")
    assert _ids(dickens) == [46, 98, 730, 1400]  # not the magazine he edited, not 19337
    assert [b.id for b in dickens.left_out[next(k for k in dickens.left_out if "editor" in k)]] == [
        50000
    ]
    assert 50000 in _ids(select_works(books, "Charles Dickens", include_roles=True))
    with pytest.raises(DataError, match=r"only as translator.*--include-roles"):
        select_works(books, "Constance Garnett")
    assert _ids(select_works(books, "Constance Garnett", include_roles=True)) == [2554, 28054]


def test_limit_unknown_names_and_languages(books):
    assert _ids(select_works(books, "Austen", limit=2)) == [105, 158]
    with pytest.raises(DataError, match="no author matching"):
        select_works(books, "Nobody Whatsoever")
    with pytest.raises(DataError, match=r"no works in language 'de'.*en \(6\), fr \(1\)"):
        select_works(books, "Jane Austen", language="de")
    with pytest.raises(UsageError):
        select_works(books, "...")


def test_title_key_ignores_case_accents_punctuation_and_asides():
    assert title_key("Pride and Prejudice") == title_key("PRIDE AND PREJUDICE (Illustrated)")
    assert title_key("Orgueil et préjugés") == "orgueil et prejuges"
    assert title_key("Poems: Series One") != title_key("Poems: Series Two")


def test_real_catalog_quirks_multi_language_cells_missing_authors_and_partial_dates():
    csv_text = (
        "Text#,Type,Issued,Title,Language,Authors,Subjects,LoCC,Bookshelves\n"
        "10,Text,1989-08-01,The King James Version of the Bible,en,,Bible,BS,\n"
        '70000,Text,2023-02-05,"A Reader in Two\nLanguages",en; la,'
        '"Chaucer, Geoffrey, -1400",,PA,\n'
        '2600,Text,2001-04-01,War and Peace,en,"Tolstoy, Leo, graf, 1828-1910; Maude, Aylmer, '
        '1858-1938 [Translator]",,PG,\n'
    )
    books = read_catalog(csv_text.encode())
    assert books[0].people == [] and books[1].languages == ["en", "la"]
    assert books[1].title == "A Reader in Two Languages"
    assert _ids(select_works(books, "Chaucer", language="la")) == [70000]
    assert _ids(select_works(books, "Leo Tolstoy")) == [2600]
    assert select_works(books, "Tolstoy").author.display == "Leo Tolstoy"
