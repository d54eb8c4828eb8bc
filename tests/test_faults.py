"""Faults, table-driven: a mirror on 127.0.0.1 that misbehaves in every way tests/mirror.py knows
(each download ends byte for byte as the server has it, or fails with exit 3 and the next run
completes), and training killed with SIGKILL several times over (each resume succeeds, no file
is ever half-written, and the end equals an uninterrupted run bit for bit)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from authorgen.errors import EXIT_SOURCE, SourceError
from authorgen.sources import Fetcher
from authorgen.sources.gutenberg import files_folder
from authorgen.sources.http import PoliteSession
from helpers import run_cli
from mirror import relayout

BIG, SMALL = 98, 46  # A Tale of Two Cities (the faults' target) and A Christmas Carol


def _book(ebook: int, layout: str = "cache") -> str:
    if layout == "files":
        return f"/{files_folder(ebook)}/{ebook}-0.txt"
    return f"/cache/epub/{ebook}/pg{ebook}.txt"


# (faults on the big book, in the order requests meet them; whether the first run completes)
MIRROR_FAULTS = [
    (["503"], True),  # retried after Retry-After
    (["429"], True),  # retried after Retry-After: 1, and not sooner
    (["503"] * 5, False),  # more than the 4 retries
    (["reset"], True),  # a TCP reset mid-body: resumed with Range
    (["short"], True),  # a clean close before Content-Length: resumed
    (["stall"], True),  # silence mid-body past the read timeout: resumed
    (["stall-headers"], True),  # no answer within the read timeout: retried
    (["reset", "ignore-range"], True),  # the resume is answered with the whole file
    (["html"], False),  # an HTML error page with status 200: never stored
    (["short"] * 4, False),  # cut on every try: the part is kept for the next run
    (["stall"] * 4, False),
]


@pytest.mark.parametrize("layout", ["cache", "files"])
@pytest.mark.parametrize(
    ("faults", "completes"), MIRROR_FAULTS, ids=["+".join(f) for f, _ in MIRROR_FAULTS]
)
def test_a_faulty_mirror_gives_whole_files_or_exit_3_and_a_rerun_completes(
    gutenberg, home, faults, completes, layout
):
    """On a mirror with cache/epub, and on one with only the classic files tree."""
    relayout(gutenberg, layout)
    gutenberg.stall_s = 1.5
    gutenberg.add_fault(_book(BIG, layout), *faults)
    session = PoliteSession(delay=0, backoff=0, timeout=(2.0, 0.5))
    fetcher = Fetcher(home / "corpora", mirror=gutenberg.url, session=session)
    corpus = home / "corpora" / "dickens"

    def stored() -> dict[str, bytes]:
        """Each listed work's raw bytes, checked against the server's file."""
        if not (corpus / "corpus.json").exists():
            return {}
        works = json.loads((corpus / "corpus.json").read_text())["works"]
        raws = {w["id"]: (corpus / "raw" / f"{w['id']}.txt").read_bytes() for w in works}
        for work in works:
            book = _book(int(work["id"][2:]), layout)
            assert raws[work["id"]] == gutenberg.files[book], work["id"]
            assert (corpus / work["file"]).is_file()
        return raws

    try:
        fetcher.fetch(ids=[SMALL, BIG], name="dickens")
        failed = None
    except SourceError as exc:
        failed = exc
    assert (failed is None) == completes, failed
    if failed is not None:
        assert failed.exit_code == EXIT_SOURCE and "\n" not in str(failed)
        assert list(stored()) == [f"pg{SMALL}"]  # the finished work is kept, the other absent
        assert not list((home / "cache" / "downloads").glob(f"pg{BIG}.*txt"))
        fetcher.fetch(ids=[SMALL, BIG], name="dickens")  # the faults are spent: a re-run
    assert sorted(stored()) == sorted([f"pg{SMALL}", f"pg{BIG}"])
    assert not list((home / "cache" / "downloads").glob("*.part*"))
    if faults == ["429"]:
        first, second = [
            t
            for (p, _), t in zip(gutenberg.log, gutenberg.times, strict=True)
            if p == _book(BIG, layout)
        ]
        assert second - first >= 0.95  # Retry-After was honoured


def test_max_bytes_refuses_a_larger_book_and_keeps_nothing(gutenberg, home, tmp_path):
    size = len(gutenberg.files[_book(BIG)])
    args = ["fetch", "--id", str(BIG), "--name", "two-cities", "--delay", "0"]
    capped = run_cli(*args, "--max-bytes", "100k", "--mirror", gutenberg.url, home=home)
    assert capped.returncode == 3, capped.stderr
    assert "larger than 102,400 bytes" in capped.stderr and "--max-bytes" in capped.stderr
    assert "Traceback" not in capped.stderr
    assert not (home / "corpora" / "two-cities").exists()
    assert not list((home / "cache" / "downloads").iterdir())  # no part to resume
    enough = run_cli(*args, "--max-bytes", f"{size}", "--mirror", gutenberg.url, home=home)
    assert enough.returncode == 0, enough.stderr
    local = tmp_path / "book.txt"
    local.write_bytes(gutenberg.files[_book(BIG)])
    too_big = run_cli("fetch", str(local), "--name", "local", "--max-bytes", "100k", home=home)
    assert too_big.returncode == 4 and "larger than --max-bytes" in too_big.stderr
    assert not (home / "corpora" / "local").exists()


# --- kill -9 during training, several times over ----------------------------------------------


def _assert_whole_files(run_dir) -> int | None:
    """Every weights and state file of the run loads (none is half-written); returns the step of
    the latest state, None when there is none yet. (A `.tmp` file may stay after a kill: it is
    never read, and the resume removes it.)"""
    if (run_dir / "model.safetensors").exists():
        load_file(str(run_dir / "model.safetensors"))
    last = run_dir / "last" if (run_dir / "last").is_dir() else run_dir / "last.old"
    if not last.is_dir():
        return None
    load_file(str(last / "model.safetensors"))
    return torch.load(last / "state.pt", weights_only=True)["step"]


@pytest.mark.slow
def test_kill_9_several_times_then_resume_equals_an_uninterrupted_run(alice_home):
    args = [
        "--model", "lstm", "--layers", "1", "--hidden", "32", "--embedding-dim", "8",
        "--context", "16", "--batch-size", "4", "--dropout", "0.1", "--device", "cpu",
        "--steps", "500", "--eval-every", "20", "--lr", "1e-2",
    ]  # fmt: skip
    whole = run_cli("train", "alice", *args, "--name", "k-whole", home=alice_home)
    assert whole.returncode == 0, whole.stderr
    env = {**os.environ, "AUTHORGEN_HOME": str(alice_home)}
    env.pop("AUTHORGEN_CACHE", None)
    cut_dir = alice_home / "checkpoints" / "k-cut"
    metrics = cut_dir / "metrics.jsonl"
    # the moments of the kills: fixed, so a failure can be replayed (KILL_SEED tries others)
    seed = int(os.environ.get("KILL_SEED", "1129"))
    rng = random.Random(seed)
    command = ["train", "alice", *args, "--name", "k-cut"]
    kills, steps_seen = 0, []
    while kills < 4:
        proc = subprocess.Popen(
            [sys.executable, "-m", "authorgen", *command],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        rows = metrics.read_text().count("\n") if metrics.exists() else 0
        wait_rows = rows + rng.randint(0 if kills else 1, 3)  # at least the config is there
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.read_text().count("\n") >= wait_rows):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))  # between evaluations, or in the middle of a save
        if proc.poll() is not None:  # it finished first: a later kill then cannot happen
            assert proc.returncode == 0, (seed, proc.stderr.read())
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        steps_seen.append(_assert_whole_files(cut_dir))
        command = ["train", "--resume", "k-cut"]
    else:
        done = run_cli(*command, home=alice_home)
        assert done.returncode == 0, (seed, done.stderr)
        assert "resuming k-cut at step" in done.stderr
    assert kills >= 3, f"the run finished before it was killed 3 times (seed {seed})"
    assert steps_seen == sorted(steps_seen, key=lambda s: s or 0), (seed, steps_seen)
    assert not list(cut_dir.rglob("*.tmp")), "a resume left a temporary file or folder"
    whole_dir = alice_home / "checkpoints" / "k-whole"
    for name in ("last/model.safetensors", "model.safetensors"):
        a, b = load_file(str(whole_dir / name)), load_file(str(cut_dir / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), (seed, name)
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert logged == list(range(20, 501, 20)), seed  # no step logged twice, none missing
