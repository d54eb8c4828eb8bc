"""Shared fixtures: an empty AUTHORGEN_HOME and a Gutenberg mirror on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import DATA, data_file, manifest_rows, run_cli, served_text
from mirror import CATALOG_PATH, Mirror, catalog_csv, catalog_rows, gzip_bytes, synthetic_book


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch) -> None:
    """Tokenizers and token ids cached by the library in one folder of this test session, never
    in the user's cache (the `home` fixture moves it into its own folder)."""
    monkeypatch.setenv("AUTHORGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty AUTHORGEN_HOME, so corpora/, checkpoints/ and the cache land in a temporary
    folder."""
    monkeypatch.setenv("AUTHORGEN_HOME", str(tmp_path))
    monkeypatch.delenv("AUTHORGEN_MIRROR", raising=False)
    monkeypatch.delenv("AUTHORGEN_CACHE", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def alice_home(tmp_path_factory) -> Path:
    """A home whose corpus "alice" holds Alice's Adventures in Wonderland, for a module's tests."""
    home = tmp_path_factory.mktemp("home")
    alice = data_file("pg11-alices-adventures-in-wonderland.txt")
    assert run_cli("fetch", str(alice), "--name", "alice", home=home).returncode == 0
    return home


@pytest.fixture
def gutenberg():
    """A real HTTP server on 127.0.0.1 laid out like a Gutenberg mirror: the test catalog
    (tests/mirror.py) at cache/epub/feeds/pg_catalog.csv.gz, the books of tests/data byte for
    byte, and a small synthetic ebook for every other text in the catalog."""
    rows = [r for r in manifest_rows() if r["gutenberg_id"]]
    with Mirror() as server:
        catalog = catalog_rows()
        server.files[CATALOG_PATH] = gzip_bytes(catalog_csv(catalog))
        for row in catalog:
            if row["Type"] == "Text":
                n = row["Text#"]
                author = row["Authors"].split(";")[0]
                server.files[f"/cache/epub/{n}/pg{n}.txt"] = synthetic_book(
                    n, row["Title"].split("\n")[0], author, row["Language"]
                )
        for row in rows:
            n = row["gutenberg_id"]
            server.files[f"/cache/epub/{n}/pg{n}.txt"] = (DATA / row["file"]).read_bytes()
        yield server


@pytest.fixture
def mirror(gutenberg) -> str:
    """The base URL of the `gutenberg` mirror."""
    return gutenberg.url


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory, worker_id) -> Path:
    """The runs of `served`, trained once in the whole test session: the first process of
    pytest-xdist to need them trains them, under a lock, and the others wait and read them."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent  # shared by the workers
    built = root / "served-runs"
    with FileLock(str(built) + ".lock"):
        if not (built / "done").exists():
            staged = root / f"served-runs.{worker_id}"
            shutil.rmtree(staged, ignore_errors=True)
            _train_served(staged / "checkpoints")
            staged.rename(built)
            (built / "done").touch()
    return built


def _train_served(checkpoints: Path) -> None:
    from authorgen.config import ModelConfig, TrainConfig
    from authorgen.corpus import Split
    from authorgen.train import train

    text = served_text()
    config = TrainConfig(
        steps=150, context=32, batch_size=8, lr=1e-2, device="cpu", eval_every=150, warmup_steps=5
    )
    split = Split.from_texts(text, text[:300], "test")
    cache = checkpoints.parent / "cache"  # never the user's
    lstm = ModelConfig(hidden=64, embedding_dim=16, layers=1)
    train(split, lstm, config, checkpoints / "lstm", cache=cache)
    gpt = ModelConfig(model="transformer", layers=2, embedding_dim=32, heads=2, context=32)
    train(split, gpt, config, checkpoints / "gpt", cache=cache)


@pytest.fixture(scope="module")
def served(served_runs, tmp_path_factory) -> Path:
    """A home with two runs for `authorgen serve`: a char LSTM and a char transformer (trained
    once per test session; each module gets its own copy, and its own cache)."""
    home = tmp_path_factory.mktemp("home")
    shutil.copytree(served_runs / "checkpoints", home / "checkpoints")
    return home
