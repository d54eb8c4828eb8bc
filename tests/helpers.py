"""Helpers for the tests: the ../shared corpora and running the command in a fresh process."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def shared_file(name: str) -> Path:
    """A file of ../shared/corpora, or skip the test with the reason."""
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"needs ../shared/corpora/{name} beside the repository (CI always has it)")
    return path


def manifest_rows() -> list[dict]:
    path = SHARED / "MANIFEST.tsv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def run_cli(
    *args: str,
    home: Path,
    stdin: str | None = None,
    env: dict | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """`python -m authorgen ARGS` in a fresh process, stdout and stderr kept apart; a None value
    in `env` unsets that variable."""
    full_env = {**os.environ, "AUTHORGEN_HOME": str(home), "NO_COLOR": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    full_env.pop("AUTHORGEN_DEBUG", None)
    if not (env or {}).get("AUTHORGEN_CACHE"):
        full_env.pop("AUTHORGEN_CACHE", None)  # the cache goes into home/cache
    return subprocess.run(
        [sys.executable, "-m", "authorgen", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def default_sigint() -> None:
    """For `Popen(preexec_fn=...)`: Ctrl-C as a terminal sends it, even when the tests run in
    the background (a shell's `&` makes children ignore SIGINT, and Python keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
