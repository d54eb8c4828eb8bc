"""`authorgen fetch` against a real HTTP server on 127.0.0.1 laid out like a Gutenberg mirror."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from werkzeug import Response

from authorgen.errors import SourceError, UsageError
from authorgen.sources import Fetcher
from authorgen.sources.http import PoliteSession
from helpers import DATA, data_file, manifest_rows, run_cli


def _manifest_row(ebook: str) -> dict:
    return next(r for r in manifest_rows() if r["gutenberg_id"] == ebook)


def test_fetch_by_id_builds_a_corpus_with_provenance(mirror, home, gutenberg):
    result = run_cli(
        "fetch",
        "--id",
        "1342",
        "--id",
        "98",
        "--name",
        "mixed",
        "--delay",
        "0",
        "--mirror",
        mirror,
        home=home,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # fetch writes no data; notes go to stderr
    corpus = home / "corpora" / "mixed"
    manifest = json.loads((corpus / "corpus.json").read_text())
    assert [w["id"] for w in manifest["works"]] == ["pg1342", "pg98"]
    for work in manifest["works"]:
        ebook = work["id"][2:]
        row = _manifest_row(ebook)
        raw = (corpus / "raw" / f"{work['id']}.txt").read_bytes()
        assert raw == (DATA / row["file"]).read_bytes()  # raw bytes kept exactly
        assert work["sha256_raw"] == row["sha256"]
        assert work["url"] == f"{mirror}/cache/epub/{ebook}/pg{ebook}.txt"
        assert work["source"] == "gutenberg" and work["language"] == "en"
        clean = (corpus / work["file"]).read_bytes()
        assert hashlib.sha256(clean).hexdigest() == work["sha256_clean"]
        assert len(clean.decode()) == work["chars"]
        assert len(work["cleaning"]["markers"]) == 2
    pride = manifest["works"][0]
    assert pride["title"] == "Pride and Prejudice" and pride["authors"] == ["Jane Austen"]
    assert (corpus / pride["file"]).read_text().startswith("PRIDE AND PREJUDICE\n")
    agents = {headers["User-Agent"] for _, headers in gutenberg.log}
    assert len(agents) == 1 and agents.pop().startswith("authorgen/")


def test_refetch_skips_verified_works_without_downloading(mirror, home, gutenberg):
    args = ("fetch", "--id", "11", "--name", "carroll", "--delay", "0", "--mirror", mirror)
    assert run_cli(*args, home=home).returncode == 0
    requests_before = len(gutenberg.log)
    again = run_cli(*args, home=home)
    assert again.returncode == 0
    assert "skipped pg11" in again.stderr
    assert len(gutenberg.log) == requests_before


def test_default_name_is_the_author_and_env_sets_the_mirror(mirror, home):
    result = run_cli(
        "fetch", "--id", "1342", "--delay", "0", home=home, env={"AUTHORGEN_MIRROR": mirror}
    )
    assert result.returncode == 0, result.stderr
    assert (home / "corpora" / "jane-austen" / "corpus.json").is_file()


def test_missing_book_exits_3_with_one_line_and_no_corpus(mirror, home):
    result = run_cli(
        "fetch", "--id", "424242", "--name", "ghost", "--delay", "0", "--mirror", mirror, home=home
    )
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines  # the error alone: no line for each layout the mirror lacks
    assert "error" in lines[0] and "404" in lines[0]
    assert not (home / "corpora" / "ghost").exists()


def test_unreachable_mirror_exits_3(home):
    result = run_cli(
        "fetch", "--id", "1", "--delay", "0", "--mirror", "http://127.0.0.1:9", home=home
    )
    assert result.returncode == 3
    assert "could not download" in result.stderr and "Traceback" not in result.stderr


def test_local_folder_and_files(home, tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "b-poem.txt").write_text("Litwo! Ojczyzno moja! ty jesteś jak zdrowie.\r\n")
    (folder / "a-prose.txt").write_bytes(data_file("pg14155-madame-bovary.txt").read_bytes())
    (folder / "notes.md").write_text("not a .txt file")
    result = run_cli("fetch", str(folder), "--name", "mixed", home=home)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((home / "corpora" / "mixed" / "corpus.json").read_text())
    ids = [w["id"] for w in manifest["works"]]
    assert ids[0] == "pg14155" and ids[1].startswith("local-") and len(ids) == 2
    poem = manifest["works"][1]
    assert poem["title"] == "b-poem" and poem["source"] == "local"
    text = (home / "corpora" / "mixed" / poem["file"]).read_text()
    assert text == "Litwo! Ojczyzno moja! ty jesteś jak zdrowie.\n"


def test_local_bad_files_exit_4(home, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    for path in (empty, tmp_path / "missing.txt"):
        result = run_cli("fetch", str(path), "--name", "x", home=home)
        assert result.returncode == 4, result.stderr
        assert "Traceback" not in result.stderr
    assert not (home / "corpora" / "x").exists()


def test_polite_session_waits_between_requests_and_retries_503(httpserver):
    times, answers = (
        [],
        iter(
            [
                Response("busy", 503, headers={"Retry-After": "0"}),
                Response("one", 200),
                Response("two", 200),
            ]
        ),
    )

    def handler(request):
        times.append(time.monotonic())
        return next(answers)

    httpserver.expect_request("/t").respond_with_handler(handler)
    session = PoliteSession(delay=0.4, backoff=0.0)
    assert session.get_if_changed(httpserver.url_for("/t"), {})[0] == b"one"  # the 503 was retried
    assert session.get_if_changed(httpserver.url_for("/t"), {})[0] == b"two"
    assert times[2] - times[1] >= 0.39  # the politeness delay between our two requests


def test_html_error_page_and_truncation_are_refused(httpserver):
    httpserver.expect_request("/html").respond_with_data(
        "<html>oops</html>", content_type="text/html"
    )
    session = PoliteSession(delay=0)
    with pytest.raises(SourceError, match="HTML"):
        session.get_if_changed(httpserver.url_for("/html"), {})
    httpserver.expect_request("/big").respond_with_data("x" * 100, content_type="text/plain")
    with pytest.raises(SourceError, match="larger than"):
        session.get_if_changed(httpserver.url_for("/big"), {}, max_bytes=10)


def test_a_download_over_the_size_cap_leaves_nothing_to_resume(httpserver, tmp_path):
    httpserver.expect_request("/big").respond_with_data("x" * 200_000, content_type="text/plain")
    dest = tmp_path / "big.txt"
    with pytest.raises(SourceError, match="larger than"):
        PoliteSession(delay=0).download(httpserver.url_for("/big"), dest, max_bytes=100_000)
    assert list(tmp_path.iterdir()) == []


def test_fetch_needs_something_to_fetch(tmp_path):
    with pytest.raises(UsageError, match="--id"):
        Fetcher(tmp_path).fetch()
