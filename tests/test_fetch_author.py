"""`authorgen fetch AUTHOR` against a real HTTP server on 127.0.0.1 laid out like a Gutenberg
mirror (tests/mirror.py), with faults injected: 503 + Retry-After, a reset mid-body, a body
cut short, a server that ignores Range, an HTML error page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from authorgen.errors import DataError, SourceError
from authorgen.sources import Fetcher
from authorgen.sources.catalog import select_works
from authorgen.sources.http import PoliteSession
from helpers import default_sigint, run_cli
from mirror import CATALOG_PATH

DICKENS = ["pg46", "pg98", "pg730", "pg1400"]


def _book(ebook: int) -> str:
    return f"/cache/epub/{ebook}/pg{ebook}.txt"


def _fetcher(home, url, **kwargs) -> Fetcher:
    session = PoliteSession(delay=0, backoff=0)
    return Fetcher(home / "corpora", mirror=url, session=session, **kwargs)


def _fetch_author(fetcher: Fetcher, query: str, **kwargs):
    selection = select_works(fetcher.read_catalog(), query, **kwargs)
    return fetcher.fetch(
        ids=[b.id for b in selection.books],
        name="dickens",
        catalog={b.id: b for b in selection.books},
    )


def _assert_identical(home, gutenberg, corpus: str = "dickens") -> list[dict]:
    """Every work's raw bytes equal the server's file; no .part file is listed."""
    manifest = json.loads((home / "corpora" / corpus / "corpus.json").read_text())
    for work in manifest["works"]:
        raw = (home / "corpora" / corpus / "raw" / f"{work['id']}.txt").read_bytes()
        assert raw == gutenberg.files[_book(int(work["id"][2:]))], work["id"]
        assert not work["file"].endswith(".part")
    return manifest["works"]


def test_newcomer_session_dry_run_fetch_and_corpora(gutenberg, home):
    url = gutenberg.url
    dry = run_cli("fetch", "Charles Dickens", "--dry-run", "--mirror", url, home=home)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == ""  # the table goes to stderr
    assert "Charles Dickens (Dickens, Charles, 1812-1870): 4 works in en (their most" in dry.stderr
    assert "Great Expectations" in dry.stderr and "Household Words" not in dry.stderr
    assert [p for p, _ in gutenberg.log] == [CATALOG_PATH]  # no book downloaded
    assert not (home / "corpora").exists()

    as_json = run_cli("fetch", "Dickens", "--dry-run", "--json", "--mirror", url, home=home)
    listed = json.loads(as_json.stdout)
    assert [w["id"] for w in listed] == [46, 98, 730, 1400]
    assert listed[3] == {
        "id": 1400,
        "title": "Great Expectations",
        "authors": ["Charles Dickens"],
        "language": "en",
    }
    assert len(gutenberg.log) == 1  # the catalog came from the cache

    got = run_cli("fetch", "Charles Dickens", "--delay", "0", "--mirror", url, home=home)
    assert got.returncode == 0, got.stderr
    works = _assert_identical(home, gutenberg, "charles-dickens")
    assert [w["id"] for w in works] == DICKENS
    assert works[1]["title"] == "A Tale of Two Cities A Story of the French Revolution"  # catalog
    assert works[3]["cleaning"]["illustrations"] == 4  # in tests/data's excerpt (the book: 16)
    assert not list((home / "cache" / "downloads").iterdir())  # nothing left half-done

    listing = run_cli("corpora", home=home)
    assert listing.returncode == 0 and listing.stdout == ""
    assert "charles-dickens" in listing.stderr and "299,908" in listing.stderr  # characters
    summary = json.loads(run_cli("corpora", "--json", home=home).stdout)
    assert summary[0]["works"] == 4 and summary[0]["languages"] == ["en"]
    show = run_cli("corpora", "show", "charles-dickens", home=home)
    assert show.returncode == 0
    assert f"from {url}/cache/epub/1400/pg1400.txt" in show.stderr
    assert "4 [Illustration] markers" in show.stderr  # in the excerpt (the whole book: 16)

    before = len(gutenberg.log)
    again = run_cli("fetch", "Charles Dickens", "--json", "--mirror", url, home=home)
    assert again.returncode == 0 and "(0 added, 4 already there)" in again.stderr
    assert len(gutenberg.log) == before  # verified works and a fresh catalog: no request
    records = json.loads(again.stdout)
    assert [(r["id"], r["status"], r["corpus"]) for r in records] == [
        (w, "skipped", "charles-dickens") for w in DICKENS
    ]


def test_the_catalog_is_cached_for_a_week_then_checked_with_a_conditional_get(gutenberg, home):
    fetcher = _fetcher(home, gutenberg.url)
    fetcher.read_catalog()
    fetcher.read_catalog()
    assert len(gutenberg.requests_to(CATALOG_PATH)) == 1
    meta_path = home / "cache" / "pg_catalog.json"
    meta = json.loads(meta_path.read_text())
    meta["checked"] = time.time() - 8 * 24 * 3600
    meta_path.write_text(json.dumps(meta))
    books = fetcher.read_catalog()
    second = gutenberg.requests_to(CATALOG_PATH)[-1]
    assert second["If-None-Match"] == gutenberg.etag(gutenberg.files[CATALOG_PATH])
    assert len(books) > 300  # the 304 kept the cached copy
    assert json.loads(meta_path.read_text())["checked"] > time.time() - 60
    gutenberg.files[CATALOG_PATH] = b"nonsense"  # the mirror's copy changes: --refresh sees it
    with pytest.raises(DataError, match="columns"):
        _fetcher(home, gutenberg.url, refresh=True).read_catalog()


def test_a_local_catalog_file_needs_no_mirror(gutenberg, home, tmp_path):
    catalog = tmp_path / "pg_catalog.csv.gz"
    catalog.write_bytes(gutenberg.files[CATALOG_PATH])
    result = run_cli(
        "fetch", "Mickiewicz", "--catalog", str(catalog), "--dry-run", "--json", home=home,
        env={"AUTHORGEN_MIRROR": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [w["title"] for w in json.loads(result.stdout)] == ["Dziady", "Pan Tadeusz"]
    assert "in pl" in result.stderr and "other languages: en 1" in result.stderr


def test_retry_after_reset_short_body_and_ignored_range_all_end_byte_identical(gutenberg, home):
    gutenberg.add_fault(_book(46), "503")  # retried after Retry-After
    gutenberg.add_fault(_book(98), "short", "short")  # cut twice, resumed twice
    gutenberg.add_fault(_book(1400), "reset", "ignore-range")  # resumed, but sent whole
    result = _fetch_author(_fetcher(home, gutenberg.url), "Charles Dickens")
    assert [w["id"] for w in result.added] == DICKENS
    _assert_identical(home, gutenberg)
    resumed = gutenberg.requests_to(_book(98))
    assert "Range" not in resumed[0]
    half = len(gutenberg.files[_book(98)]) // 2
    start = int(resumed[1]["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= half  # resumed from what had arrived (whole chunks of it)
    assert resumed[1]["If-Range"] == gutenberg.etag(gutenberg.files[_book(98)])
    assert len(gutenberg.requests_to(_book(46))) == 2
    assert len(gutenberg.requests_to(_book(98))) == 3
    # the reset left a part; the Range asking for the rest was answered with the whole file
    assert [h.get("Range") is not None for h in gutenberg.requests_to(_book(1400))] == [
        False,
        True,
    ]


@pytest.mark.slow
def test_a_download_cut_every_time_fails_cleanly_and_the_next_run_finishes(gutenberg, home):
    gutenberg.add_fault(_book(1400), *["short"] * 4)
    cut = run_cli("fetch", "Dickens", "--delay", "0", "--mirror", gutenberg.url, home=home)
    assert cut.returncode == 3
    errors = [line for line in cut.stderr.splitlines() if line.startswith("authorgen: error")]
    assert len(errors) == 1 and "run the command again to resume" in errors[0]
    assert "Traceback" not in cut.stderr
    part = home / "cache" / "downloads" / "pg1400.txt.part"
    assert part.is_file() and part.stat().st_size < len(gutenberg.files[_book(1400)])
    manifest = json.loads((home / "corpora" / "charles-dickens" / "corpus.json").read_text())
    assert [w["id"] for w in manifest["works"]] == DICKENS[:3]  # the finished ones are kept

    before, kept = len(gutenberg.log), part.stat().st_size
    done = run_cli("fetch", "Dickens", "--delay", "0", "--mirror", gutenberg.url, home=home)
    assert done.returncode == 0, done.stderr
    assert "(1 added, 3 already there)" in done.stderr
    requests = gutenberg.log[before:]
    assert [p for p, _ in requests] == [_book(1400)]  # one request, for the rest of one book
    assert requests[0][1]["Range"] == f"bytes={kept}-"
    assert not part.exists()
    _assert_identical(home, gutenberg, "charles-dickens")


def test_an_html_error_page_is_never_stored(gutenberg, home):
    gutenberg.add_fault(_book(46), "html")
    fetcher = _fetcher(home, gutenberg.url)
    with pytest.raises(SourceError, match="HTML"):
        _fetch_author(fetcher, "Charles Dickens")
    assert not (home / "corpora" / "dickens").exists()
    assert not (home / "cache" / "downloads" / "pg46.txt").exists()
    result = _fetch_author(fetcher, "Charles Dickens")  # the second run completes the job
    assert len(result.added) == 4
    _assert_identical(home, gutenberg)


def test_a_changed_file_on_the_server_restarts_the_download(gutenberg, home):
    dest = home / "cache" / "downloads" / "pg11.txt"
    dest.parent.mkdir(parents=True)
    original = gutenberg.files[_book(11)]
    (dest.parent / "pg11.txt.part").write_bytes(b"stale bytes of an older edition")
    (dest.parent / "pg11.txt.part.validator").write_text('"an-older-etag"')
    session = PoliteSession(delay=0, backoff=0)
    assert session.download(gutenberg.url + _book(11), dest) == len(original)
    assert dest.read_bytes() == original  # If-Range did not match: the whole file came back
    assert not (dest.parent / "pg11.txt.part").exists()


def test_unwrap_is_the_default_is_recorded_and_recleans_without_downloading(gutenberg, home):
    url, corpus = gutenberg.url, home / "corpora" / "jane-austen"
    args = ("fetch", "--id", "1342", "--delay", "0", "--mirror", url)
    assert run_cli(*args, "--no-unwrap", home=home).returncode == 0
    work = json.loads((corpus / "corpus.json").read_text())["works"][0]
    assert not work["cleaning"]["unwrap"]
    assert "a single man in possession\nof a good fortune" in (corpus / work["file"]).read_text()
    before = len(gutenberg.log)
    result = run_cli(*args, home=home)  # the default joins the lines
    assert result.returncode == 0, result.stderr
    assert len(gutenberg.log) == before  # cleaned again from the stored raw bytes
    work = json.loads((corpus / "corpus.json").read_text())["works"][0]
    assert work["cleaning"]["unwrap"] and work["cleaning"]["unwrapped_paragraphs"] > 400
    text = (corpus / work["file"]).read_text()
    assert "It is a truth universally acknowledged, that a single man in possession of" in text


def test_several_authors_and_unknown_names_exit_with_one_line(gutenberg, home):
    url = gutenberg.url
    for args, code, words in [
        (("Alexandre Dumas",), 2, '"Dumas, Alexandre, 1824-1895" (1 work)'),
        (("Nobody Whatsoever",), 4, "no author matching"),
        (("Jane Austen", "--lang", "xx"), 4, "no works in language 'xx'"),
        (("Jane Austen", "--limit", "0"), 2, "--limit"),
        (("--dry-run", "--id", "5"), 2, "--dry-run"),
    ]:
        result = run_cli("fetch", *args, "--dry-run", "--mirror", url, home=home)
        assert result.returncode == code, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and words in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (home / "corpora").exists()


def test_ctrl_c_mid_download_keeps_the_part_and_the_next_run_resumes(gutenberg, home):
    gutenberg.add_fault(_book(1400), "slow")  # the body trickles out in small pieces
    args = ("fetch", "--id", "1400", "--name", "dickens", "--mirror", gutenberg.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "authorgen", *args],
        env={**os.environ, "AUTHORGEN_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    part = home / "cache" / "downloads" / "pg1400.txt.part"
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    body = gutenberg.files[_book(1400)]
    kept = part.read_bytes()
    assert 0 < len(kept) < len(body) and body.startswith(kept)
    assert not (home / "corpora" / "dickens" / "corpus.json").exists()

    done = run_cli(*args, "--delay", "0", home=home)
    assert done.returncode == 0, done.stderr
    assert gutenberg.requests_to(_book(1400))[-1]["Range"] == f"bytes={len(kept)}-"
    _assert_identical(home, gutenberg)


def test_a_catalogued_work_without_plain_text_is_skipped_not_fatal(gutenberg, home):
    del gutenberg.files[_book(730)]  # catalogued as text, but the mirror has no .txt of it
    url = gutenberg.url
    result = run_cli("fetch", "Charles Dickens", "--delay", "0", "--mirror", url, home=home)
    assert result.returncode == 0, result.stderr
    assert "skipped pg730: the mirror has no plain text of it" in result.stderr
    assert "(3 added, 0 already there, 1 without plain text)" in result.stderr
    works = _assert_identical(home, gutenberg, "charles-dickens")
    assert [w["id"] for w in works] == ["pg46", "pg98", "pg1400"]
    del gutenberg.files[_book(28240)]  # Mickiewicz's only work in English
    lost = run_cli("fetch", "Mickiewicz", "--lang", "en", "--mirror", url, home=home)
    assert lost.returncode == 3 and "none of these works as plain text" in lost.stderr
    assert not (home / "corpora" / "adam-mickiewicz").exists()
