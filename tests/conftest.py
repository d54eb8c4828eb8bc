"""Shared fixtures: an empty AUTHORGEN_HOME and a Gutenberg-like mirror on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import SHARED, manifest_rows


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty AUTHORGEN_HOME, so corpora/ and checkpoints/ land in a temporary folder."""
    monkeypatch.setenv("AUTHORGEN_HOME", str(tmp_path))
    monkeypatch.delenv("AUTHORGEN_MIRROR", raising=False)
    return tmp_path


@pytest.fixture
def mirror(httpserver):
    """A real HTTP server on 127.0.0.1 laid out like a Gutenberg mirror's cache/epub folder,
    serving the books of ../shared/corpora byte for byte. Yields the mirror's base URL."""
    rows = [r for r in manifest_rows() if r["gutenberg_id"]]
    if not rows:
        pytest.skip("needs ../shared/corpora/MANIFEST.tsv beside the repository")
    httpserver.no_handler_status_code = 404  # like a real mirror, not the test server's 500
    for row in rows:
        n = row["gutenberg_id"]
        httpserver.expect_request(f"/cache/epub/{n}/pg{n}.txt").respond_with_data(
            (SHARED / row["file"]).read_bytes(), content_type="text/plain; charset=utf-8"
        )
    return httpserver.url_for("/").rstrip("/")
