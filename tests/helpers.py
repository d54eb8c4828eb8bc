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
from contextlib import redirect_stderr, redirect_stdout, suppress
from pathlib import Path

from authorgen.callbacks import Callback

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
    in `env` unsets that variable. Where the system can fork, the process is forked from one
    that has imported torch and authorgen already (`_Launcher`): a new process all the same,
    without the 2-4 s of imports each command would spend first."""
    env = _command_env(home, env)
    if _LAUNCHER.usable:
        return _LAUNCHER.run(list(args), env, stdin, timeout, cwd)
    return subprocess.run(
        [sys.executable, "-m", "authorgen", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


# what a command imports, at its slowest: torch (and its compiler, which the optimizer loads),
# the library and sentencepiece (not matplotlib: it would be set up outside the command's cache)
_PRELOAD = [
    "torch",
    "torch._dynamo",
    "authorgen.cli",
    "authorgen.train",
    "authorgen.evaluate",
    "authorgen.compare",
    "authorgen.serve.api",
    "authorgen.tokenizer.subword",
]


class _Launcher:
    """Commands in processes forked from a server that has imported `_PRELOAD` (the standard
    library's forkserver): each is a process of its own, with its own memory, arguments,
    environment, working folder, standard streams and exit code, as `python -m authorgen` is.
    Nothing ran in the server but imports, so forking it is safe."""

    def __init__(self):
        import multiprocessing

        self.usable = "forkserver" in multiprocessing.get_all_start_methods()
        self.context = None

    def run(self, args, env, stdin, timeout, cwd) -> subprocess.CompletedProcess:
        import tempfile

        if self.context is None:
            import multiprocessing

            self.context = multiprocessing.get_context("forkserver")
            self.context.set_forkserver_preload(_PRELOAD)
        with tempfile.TemporaryDirectory(prefix="authorgen-cli-") as folder:
            files = [Path(folder, name) for name in ("stdin", "stdout", "stderr")]
            files[0].write_text(stdin or "", encoding="utf-8")
            process = self.context.Process(
                target=_command, args=(args, env, str(cwd) if cwd else None, *map(str, files))
            )
            process.start()
            process.join(timeout)
            if process.exitcode is None:
                process.kill()
                process.join()
                raise subprocess.TimeoutExpired(["authorgen", *args], timeout)
            out, err = (f.read_text(encoding="utf-8", errors="replace") for f in files[1:])
        return subprocess.CompletedProcess(["authorgen", *args], process.exitcode, out, err)


def _command(args, env, cwd, stdin_path, stdout_path, stderr_path) -> None:
    """In the forked process: the standard streams on files, then `authorgen ARGS`."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path, flags in (
        (0, stdin_path, os.O_RDONLY),
        (1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["authorgen", *args]
    code = 0
    try:
        from authorgen.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError):
                stream.flush()
    os._exit(code)


_LAUNCHER = _Launcher()


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


def tiny_model(kind: str, text: str, context: int = 8, layers: int = 2):
    """A small random model of `kind` (lstm, gru, rnn, transformer) over a char tokenizer of
    `text`, in eval mode, the same for the same arguments: (model, tokenizer)."""
    import torch

    from authorgen.config import ModelConfig
    from authorgen.models import build_model
    from authorgen.tokenizer.char import CharTokenizer

    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    size = (
        {"heads": 2, "context": context, "mlp_dim": 32} if kind == "transformer" else {"hidden": 32}
    )
    config = ModelConfig(
        model=kind, vocab_size=tok.vocab_size, embedding_dim=16, layers=layers, **size
    )
    return build_model(config).eval(), tok


class StopAt(Callback):
    """Ctrl-C, as the loop sees it, right after step `at`."""

    def __init__(self, at: int):
        self.at = at

    def on_step(self, step, loss, progress, tokens_per_s):
        if step == self.at:
            raise KeyboardInterrupt
