"""Helpers for the tests: the books of tests/data, and running the command in a fresh process or
through its entry point in this one."""

from __future__ import annotations

import csv
import io
import os
import random
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"  # excerpts of ../shared/corpora (README there)


def data_file(name: str) -> Path:
    """A file of tests/data."""
    path = DATA / name
    assert path.is_file(), f"tests/data/{name} is missing"
    return path


def manifest_rows() -> list[dict]:
    """The rows of tests/data/MANIFEST.tsv: file, author, title, ebook number, header era..."""
    with open(DATA / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _command_env(home: Path, env: dict | None) -> dict:
    """The environment a command runs with: this one, AUTHORGEN_HOME at `home`, no colour, no
    debug tracebacks, the cache in home/cache unless `env` names one; None in `env` unsets."""
    full_env = {**os.environ, "AUTHORGEN_HOME": str(home), "NO_COLOR": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    full_env.pop("AUTHORGEN_DEBUG", None)
    if not (env or {}).get("AUTHORGEN_CACHE"):
        full_env.pop("AUTHORGEN_CACHE", None)  # the cache goes into home/cache
    return full_env


def run_in_process(
    *args: str, home: Path, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """The command through its entry point (`authorgen.cli.main`) in this process, as
    `run_cli` runs it in a fresh one: its stdout and stderr kept apart, its exit code, no stdin;
    the environment, arguments and working folder are put back afterwards."""
    from authorgen.cli import main

    saved_env, saved_argv, saved_stdin, saved_cwd = (
        dict(os.environ),
        sys.argv,
        sys.stdin,
        Path.cwd(),
    )
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        os.environ.clear()
        os.environ.update(_command_env(home, env))
        sys.argv, sys.stdin = ["authorgen", *args], io.StringIO("")
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.stdin = saved_argv, saved_stdin
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(["authorgen", *args], code, out.getvalue(), err.getvalue())


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
    return subprocess.run(
        [sys.executable, "-m", "authorgen", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_command_env(home, env),
        timeout=timeout,
        cwd=cwd,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def default_sigint() -> None:
    """For `Popen(preexec_fn=...)`: Ctrl-C as a terminal sends it, even when the tests run in
    the background (a shell's `&` makes children ignore SIGINT, and Python keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


TEXT_WORDS = "the a house river old green walked slowly towards her quiet garden"


def served_text() -> str:
    """Sentences of a dozen words, for the runs `authorgen serve` tests serve."""
    rng = random.Random(1)
    words = TEXT_WORDS.split()
    sentences = [
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 10))).capitalize() + "."
        for _ in range(24)
    ]
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, 24, 4)]
    # and the characters of HTML, so that a prompt may hold tags (the page shows them as text)
    paragraphs.append('Tags: <b>, <img src=x onerror="alert(1)">, <script>alert(2)</script>.')
    return "\n\n".join(paragraphs) + "\n"
