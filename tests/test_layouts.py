"""Mirrors lay books out differently (cache/epub only, the classic files tree only, or both),
and the catalog comes from the mirror, gutenberg.org, a URL or a file."""

from __future__ import annotations

import json

import pytest

from authorgen.sources import gutenberg as gutenberg_module
from authorgen.sources.gutenberg import book_url, files_folder
from helpers import data_file, run_cli, run_in_process
from mirror import (
    CATALOG_PATH,
    Mirror,
    catalog_csv,
    catalog_rows,
    gzip_bytes,
    relayout,
    synthetic_book,
)


def _works(home, corpus: str) -> dict[str, bytes]:
    manifest = json.loads((home / "corpora" / corpus / "corpus.json").read_text())
    return {
        w["id"]: (home / "corpora" / corpus / "raw" / f"{w['id']}.txt").read_bytes()
        for w in manifest["works"]
    }


def _misses(gutenberg) -> int:
    """Requests the mirror answered 404 (it logs every request; 404s are for absent files)."""
    return sum(1 for path, _ in gutenberg.log if path not in gutenberg.files)


def test_files_folders_follow_the_tree():
    assert files_folder(1342) == "1/3/4/1342"
    assert files_folder(5) == "0/5"
    assert files_folder(12) == "1/12"
    assert book_url("http://m", 1342, "files-8") == "http://m/1/3/4/1342/1342-8.txt"
    assert book_url("http://m", 11) == "http://m/cache/epub/11/pg11.txt"


@pytest.mark.parametrize("layout", ["cache", "files", "both"])
def test_fetch_by_id_and_by_author_on_every_layout(gutenberg, tmp_path, layout):
    expected = {
        "pg11": data_file("pg11-alices-adventures-in-wonderland.txt").read_bytes(),
    }
    relayout(gutenberg, layout)
    home = tmp_path / layout
    url = gutenberg.url
    by_id = run_cli(
        "fetch", "--id", "11", "--name", "alice", "--delay", "0", "--mirror", url, home=home
    )
    assert by_id.returncode == 0, by_id.stderr
    assert _works(home, "alice") == expected
    shown = json.loads((home / "corpora" / "alice" / "corpus.json").read_text())["works"][0]
    where = "/cache/epub/11/pg11.txt" if layout != "files" else "/1/11/11-0.txt"
    assert shown["url"] == url + where  # the URL it came from
    assert _misses(gutenberg) == (1 if layout == "files" else 0)  # cache/epub tried once
    gutenberg.log.clear()
    by_author = run_cli("fetch", "Charles Dickens", "--delay", "0", "--mirror", url, home=home)
    assert by_author.returncode == 0, by_author.stderr
    assert _misses(gutenberg) == 0  # the layout that answered is remembered for this mirror
    works = _works(home, "charles-dickens")
    assert sorted(works) == ["pg1400", "pg46", "pg730", "pg98"]
    manifest = {row["gutenberg_id"]: row["file"] for row in _manifest()}
    for work_id, raw in works.items():
        if work_id[2:] in manifest:
            assert raw == data_file(manifest[work_id[2:]]).read_bytes(), work_id


def _manifest():
    from helpers import manifest_rows

    return [r for r in manifest_rows() if r["gutenberg_id"]]


def test_a_latin1_edition_only_in_the_files_tree_is_decoded_as_latin1(gutenberg, home):
    relayout(gutenberg, "files")
    title = "Là où l'été s'achève, Noël et Ève"
    latin1 = synthetic_book(4242, title, "Hugo, Victor", "fr").decode("utf-8").encode("latin-1")
    gutenberg.files[f"/{files_folder(4242)}/4242-8.txt"] = latin1
    result = run_cli(
        "fetch", "--id", "4242", "--name", "hugo", "--delay", "0", "--mirror", gutenberg.url,
        home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _works(home, "hugo") == {"pg4242": latin1}  # kept as it came
    manifest = json.loads((home / "corpora" / "hugo" / "corpus.json").read_text())
    cleaned = (home / "corpora" / "hugo" / manifest["works"][0]["file"]).read_text("utf-8")
    assert cleaned.startswith(title + "\n")  # read as Latin-1, stored as UTF-8


def test_when_nothing_answers_the_error_names_every_url_tried(gutenberg, home):
    result = run_cli(
        "fetch", "--id", "424242", "--name", "ghost", "--delay", "0", "--mirror", gutenberg.url,
        home=home,
    )  # fmt: skip
    assert result.returncode == 3
    for path in [
        "/cache/epub/424242/pg424242.txt",
        "/4/2/4/2/4/424242/424242-0.txt",
        "/4/2/4/2/4/424242/424242-8.txt",
        "/4/2/4/2/4/424242/424242.txt",
    ]:
        assert path in result.stderr
    assert "another --mirror" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1


def test_a_cut_download_in_the_files_tree_resumes_with_a_range(gutenberg, home):
    relayout(gutenberg, "files")
    path = "/1/4/0/1400/1400-0.txt"
    gutenberg.add_fault(path, *["short"] * 4)
    args = ("fetch", "--id", "1400", "--name", "dickens", "--delay", "0", "--mirror", gutenberg.url)
    cut = run_cli(*args, home=home)
    assert cut.returncode == 3 and "run the command again to resume" in cut.stderr
    part = home / "cache" / "downloads" / "pg1400.files-0.txt.part"
    kept = part.stat().st_size
    assert 0 < kept < len(gutenberg.files[path])
    before = len(gutenberg.log)
    done = run_cli(*args, home=home)
    assert done.returncode == 0, done.stderr
    requests = gutenberg.log[before:]
    assert [p for p, _ in requests] == [path]  # the layout remembered: no probe of cache/epub
    assert requests[0][1]["Range"] == f"bytes={kept}-"
    assert _works(home, "dickens") == {"pg1400": gutenberg.files[path]}


# --- where the catalog comes from ---


@pytest.fixture
def feed():
    """A second server holding only the catalog feed, as gutenberg.org's offline catalog."""
    with Mirror() as server:
        server.files[CATALOG_PATH] = gzip_bytes(catalog_csv(catalog_rows()))
        yield server


def test_a_mirror_without_a_catalog_falls_back_to_gutenberg_orgs_feed(
    gutenberg, feed, home, monkeypatch
):
    del gutenberg.files[CATALOG_PATH]
    monkeypatch.setattr(gutenberg_module, "OFFLINE_CATALOG", feed.url + CATALOG_PATH)
    args = ("fetch", "Charles Dickens", "--delay", "0", "--mirror", gutenberg.url)
    result = run_in_process(*args, home=home)
    assert result.returncode == 0, result.stderr
    assert sorted(_works(home, "charles-dickens")) == ["pg1400", "pg46", "pg730", "pg98"]
    assert len(feed.requests_to(CATALOG_PATH)) == 1
    assert len(gutenberg.requests_to(CATALOG_PATH)) == 1  # the mirror's feed asked once
    again = run_in_process(*args, "--dry-run", home=home)  # a week fresh: nobody is asked
    assert again.returncode == 0 and len(feed.requests_to(CATALOG_PATH)) == 1


def test_a_catalog_given_as_a_url_or_in_the_environment(gutenberg, feed, tmp_path):
    del gutenberg.files[CATALOG_PATH]
    url = feed.url + CATALOG_PATH
    args = ("fetch", "Charles Dickens", "--dry-run", "--mirror", gutenberg.url)
    given = run_cli(*args, "--catalog", url, home=tmp_path / "a")
    assert given.returncode == 0, given.stderr
    assert "Charles Dickens (Dickens, Charles, 1812-1870): 4 works" in given.stderr
    from_env = run_cli(*args, home=tmp_path / "b", env={"AUTHORGEN_CATALOG": url})
    assert from_env.returncode == 0, from_env.stderr
    assert len(feed.requests_to(CATALOG_PATH)) == 2
    assert gutenberg.requests_to(CATALOG_PATH) == []  # the mirror's feed was not asked
