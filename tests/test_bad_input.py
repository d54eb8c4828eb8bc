"""Bad input, table-driven: every case fails in one line with the documented exit code, prints
nothing on stdout, shows no traceback, and leaves the user's folders as they were."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from helpers import run_cli, run_in_process
from texts import ENGLISH, POLISH

NUMBERS = ["nan", "inf", "-1", "0"]


def _snapshot(home) -> dict:
    """Every folder under home (the cache aside), and every file with its size and modification
    time: a command that made even an empty folder shows."""
    seen = {}
    for root, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if d != "cache"]
        seen.update({os.path.join(root, d): "folder" for d in dirs})
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            seen[path] = (st.st_size, st.st_mtime_ns)
    return seen


def _damage(home, run: str, damage) -> None:
    """A copy of the trained run "book-lstm", named `run`, damaged by `damage(folder)`."""
    folder = home / "checkpoints" / run
    shutil.copytree(home / "checkpoints" / "book-lstm", folder)
    damage(folder)


def _cut(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_config(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _link_out(path, target) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A corpus, a tiny trained run, damaged copies of both, and bad files to fetch."""
    home = tmp_path_factory.mktemp("home")
    book = home / "book.txt"
    book.write_text(ENGLISH * 20, encoding="utf-8")
    env = {"AUTHORGEN_CACHE": str(home / "cache")}
    assert run_in_process("fetch", str(book), "--name", "book", home=home, env=env).returncode == 0
    (home / "tiny.txt").write_text("Hello there. A small text.\n")
    tiny = run_in_process("fetch", str(home / "tiny.txt"), "--name", "tiny", home=home)
    assert tiny.returncode == 0
    trained = run_in_process(
        "train", "book", "--steps", "5", "--layers", "1", "--hidden", "16", "--embedding-dim",
        "8", "--context", "16", "--device", "cpu", home=home, env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    # files to fetch
    inputs = home / "inputs"
    inputs.mkdir()
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / "blank.txt").write_text(" \n\t\n  \r\n")
    (inputs / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (inputs / "polish-cp1250.txt").write_bytes(POLISH.encode("cp1250"))
    outside = home / "outside.txt"  # what links in damaged folders point at; never touched
    outside.write_text("the user's own file\n")
    # damaged runs
    _damage(home, "no-weights", lambda f: (f / "model.safetensors").unlink())
    _damage(home, "cut-weights", lambda f: _cut(f / "model.safetensors"))
    _damage(
        home, "foreign-weights", lambda f: save_file({"x": torch.zeros(3)}, f / "model.safetensors")
    )
    _damage(home, "no-tokenizer", lambda f: (f / "tokenizer.json").unlink())
    _damage(home, "foreign-tokenizer", lambda f: (f / "tokenizer.json").write_text('{"a": 1}'))
    _damage(home, "cut-config", lambda f: _cut(f / "config.json"))
    _damage(home, "newer", lambda f: _edit_config(f, format=99, authorgen="9.0.0"))
    _damage(
        home,
        "cut-state",
        lambda f: (_cut(f / "last" / "state.pt"), _edit_config(f, status="interrupted")),
    )
    _damage(home, "linked-metrics", lambda f: _link_out(f / "metrics.jsonl", outside))
    _damage(
        home,
        "linked-state",
        lambda f: (
            _link_out(f / "last" / "state.pt", outside),
            _edit_config(f, status="interrupted"),
        ),
    )
    (home / "checkpoints" / "book-gru").mkdir()  # killed before its config was written
    # damaged corpora
    corpora = home / "corpora"
    shutil.copytree(corpora / "book", corpora / "linked")
    _link_out(next((corpora / "linked" / "works").iterdir()), outside)
    shutil.copytree(corpora / "book", corpora / "escape")
    manifest = json.loads((corpora / "escape" / "corpus.json").read_text())
    manifest["works"][0]["file"] = "../../outside.txt"
    (corpora / "escape" / "corpus.json").write_text(json.dumps(manifest))
    return home


TRAIN = ["train", "book", "--device", "cpu", "--steps", "5"]
GENERATE = ["generate", "book-lstm", "--length", "20"]
CASES = [
    # numbers: negative, zero, NaN, infinite, for each numeric option
    *[([*TRAIN, "--lr", v], 2, "--lr") for v in NUMBERS],
    *[(["train", "book", "--device", "cpu", "--steps", v], 2, "--steps") for v in ["0", "-3"]],
    *[(["train", "book", "--time", v], 2, "--time") for v in ["0", "-1m", "soon", "nan"]],
    *[([*TRAIN, "--batch-size", v], 2, "--batch-size") for v in ["0", "-1"]],
    *[([*TRAIN, "--context", v], 2, "--context") for v in ["0", "-1"]],
    *[([*TRAIN, "--dropout", v], 2, "--dropout") for v in ["nan", "-0.1", "1.5"]],
    *[([*TRAIN, "--layers", v], 2, "--layers") for v in ["0", "-1"]],
    *[([*TRAIN, "--hidden", v], 2, "--hidden") for v in ["0", "-1"]],
    *[([*TRAIN, "--weight-decay", v], 2, "--weight-decay") for v in ["nan", "-1", "inf"]],
    *[([*TRAIN, "--eval-every", v], 2, "--eval-every") for v in ["0", "-1"]],
    *[([*GENERATE, "--temperature", v], 2, "--temperature") for v in ["nan", "inf", "-1"]],
    *[([*GENERATE[:2], "--length", v], 2, "--length") for v in ["0", "-1"]],
    *[([*GENERATE, "-n", v], 2, "-n") for v in ["0", "-1"]],
    *[([*GENERATE, "--top-p", v], 2, "--top-p") for v in ["nan", "0", "1.5", "2"]],
    *[([*GENERATE, "--top-k", v], 2, "--top-k") for v in ["0", "-1"]],
    *[([*GENERATE, "--repetition-penalty", v], 2, "--repetition-penalty") for v in NUMBERS],
    *[(["serve", "--port", v], 2, "--port") for v in ["-1", "65536", "http"]],
    *[(["serve", "--max-batch", v], 2, "--max-batch") for v in ["0", "-1"]],
    *[(["serve", "--max-loaded", v], 2, "--max-loaded") for v in ["0", "-1"]],
    (["serve", "--max-waiting", "-1"], 2, "--max-waiting"),
    *[([*TRAIN, "--threads", v], 2, "--threads") for v in ["0", "-1", "many"]],
    ([*GENERATE, "--threads", "0"], 2, "--threads"),
    ([*GENERATE, "--device", "mps"], 2, "--device mps: PyTorch reports no Apple GPU"),
    ([*GENERATE, "--precision", "int8"], 2, "int8 weights are for a transformer run"),
    ([*GENERATE, "--precision", "fp16"], 2, "--precision must be one of auto, fp32, int8"),
    (["serve", "--precision", "fp16"], 2, "--precision"),
    ([*TRAIN, "--device", "mps"], 2, "--device mps: PyTorch reports no Apple GPU"),
    (["serve", "--host", "no.such.host.invalid"], 2, "cannot serve on"),
    *[([*GENERATE, "--max-copy", v], 2, "--max-copy") for v in ["0", "-1"]],
    (["eval", "book-lstm", "--samples", "-1"], 2, "--samples"),
    (["eval", "book-lstm", "--length", "0"], 2, "--length"),
    (["compare", "book", "--steps", "0"], 2, "--steps"),
    (["compare", "book", "--time", "-1"], 2, "--time"),
    (["compare", "book", "--models", ""], 2, "--models"),
    # unknown names
    ([*TRAIN, "--model", "cnn"], 2, "--model"),
    ([*TRAIN, "--tokenizer", "wordpiece"], 2, "--tokenizer must be one of"),
    ([*GENERATE, "--until", "chapter"], 2, "--until"),
    # tokenizers and word vectors (the error is all stderr says: the check comes first)
    ([*TRAIN, "--vocab-size", "500"], 2, "--vocab-size applies to word, bpe and unigram"),
    ([*TRAIN, "--tokenizer", "bpe", "--lowercase"], 2, "--lowercase applies to the word"),
    ([*TRAIN, "--tokenizer", "bpe", "--vocab-size", "100"], 2, "at least 300"),
    ([*TRAIN, "--tokenizer", "unigram", "--vocab-size", "60000"], 2, "is too large for this text"),
    ([*TRAIN, "--pretrained-embeddings", "nowhere.txt"], 4, "no word-vector file"),
    (
        [*TRAIN, "--tokenizer", "word", "--pretrained-embeddings", "nowhere.txt"],
        4,
        "no word-vector",
    ),
    # runs that exist, and runs that cannot begin: the old run stays, no new one is left
    ([*TRAIN, "--name", "book-lstm"], 2, "already exists"),
    ([*TRAIN, "--context", "10000000", "--force"], 4, "too few for --context"),
    ([*TRAIN, "--context", "10000000", "--name", "big"], 4, "too few for --context"),
    (["train", "nobook", "--steps", "5"], 4, "no corpus named 'nobook'"),
    ([*TRAIN, "--from", "gpt2"], 4, "a model on the hub is OWNER/NAME, as openai-community/gpt2"),
    (["generate", "no-such-run"], 4, "no run named 'no-such-run'"),
    (["serve", "no-such-run"], 4, "no run named 'no-such-run'"),
    (["serve", "book-lstm", "cut-config"], 4, "damaged"),
    (["eval", "no-such-run"], 4, "no run named 'no-such-run'"),
    (["runs", "show", "no-such-run"], 4, "no run named 'no-such-run'"),
    (["corpora", "show", "nobook"], 4, "no corpus named 'nobook'"),
    (["eval", "book-lstm", "--corpus", "nobook"], 4, "no corpus named 'nobook'"),
    # names that would leave the folders
    (["train", "../book", "--steps", "5"], 2, "invalid corpus name"),
    (["serve", "../book-lstm"], 4, "no run named '../book-lstm'"),
    ([*TRAIN, "--name", "../escape"], 2, "invalid run name"),
    (["corpora", "show", "../x"], 2, "invalid corpus name"),
    (["compare", "../book", "--steps", "5"], 2, "invalid corpus name"),
    # prompts and texts
    ([*GENERATE, "--prompt", "ℵ unseen"], 4, "ℵ"),
    ([*GENERATE, "--prompt", "Żółw"], 4, "never saw in training: 'ó', 'ł', 'Ż'"),
    (["eval", "book-lstm", "--text", "/no/such/file.txt"], 4, "cannot read"),
    (["train", "tiny", "--device", "cpu", "--steps", "5"], 4, "too few for --context"),
    # files to fetch
    (["fetch", "inputs/empty.txt", "--name", "x"], 4, "no text left"),
    (["fetch", "inputs/blank.txt", "--name", "x"], 4, "no text left"),
    (["fetch", "inputs/picture.png", "--name", "x"], 4, "binary file"),
    (["fetch", "inputs/polish-cp1250.txt", "--name", "x"], 4, "iconv -f cp1250"),
    (["fetch", "inputs/missing.txt", "--name", "x"], 4, "no such file"),
    (["fetch", "book.txt", "--name", "x", "--max-bytes", "1k"], 4, "larger than --max-bytes"),
    *[(["fetch", "book.txt", "--max-bytes", v], 2, "--max-bytes") for v in [*NUMBERS, "lots"]],
    (["fetch", "--id", "1", "--mirror", "ftp://mirror.example"], 2, "--mirror"),
    (["fetch", "--id", "1", "--name", "../escape"], 2, "invalid corpus name"),
    (["fetch", "--id", "0"], 2, "--id must be a positive ebook number"),
    (["fetch", "--id", "1", "--delay", "-1"], 2, "--delay"),
    (["fetch"], 2, "say what to fetch"),
    (["fetch", "--id", "1", "--delay", "0", "--mirror", "http://127.0.0.1:9"], 3, "refused"),
    # damaged run folders: missing, cut and foreign files, a newer format, links out
    (["generate", "no-weights"], 4, "cannot load"),
    (["generate", "cut-weights"], 4, "cannot load"),
    (["generate", "foreign-weights"], 4, "cannot load"),
    (["eval", "foreign-weights"], 4, "cannot load"),
    (["generate", "no-tokenizer"], 4, "tokenizer"),
    (["generate", "foreign-tokenizer"], 4, "tokenizer"),
    (["generate", "cut-config"], 4, "damaged"),
    (["runs", "show", "cut-config"], 4, "damaged"),
    (["generate", "newer"], 4, "newer authorgen"),
    (["train", "--resume", "newer"], 4, "newer authorgen"),
    (["train", "--resume", "cut-state"], 4, "cannot read the latest state"),
    (["generate", "linked-metrics"], 4, "link that leads outside"),
    (["train", "--resume", "linked-state"], 4, "link that leads outside"),
    (["train", "--resume", "book-gru"], 4, "stopped before training began"),
    ([*TRAIN, "--model", "gru"], 2, "holds no run"),
    # damaged corpora
    (["train", "linked", "--steps", "5"], 4, "link that leads outside"),
    (["corpora", "show", "escape"], 4, "damaged"),
    (["train", "escape", "--steps", "5"], 4, "damaged"),
]


def _fails_cleanly(run, home, args, code, says) -> None:
    before = _snapshot(home)
    env = {"AUTHORGEN_CACHE": str(home / "cache")}
    out = run(*args, home=home, env=env, cwd=home)
    assert out.returncode == code, out.stderr
    assert out.stdout == ""
    assert says in out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(("authorgen: error:", "Error:", "│", "╰", "Try")), lines[-1]
    if "--vocab-size" in args or "--lowercase" in args or "--pretrained-embeddings" in args:
        assert len(lines) == 1, lines  # checked before anything is said or made
    assert _snapshot(home) == before  # nothing the user had was touched


@pytest.mark.parametrize(("args", "code", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_fails_cleanly(home, args, code, says):
    """Through the command's entry point, in this process: the table runs in seconds."""
    _fails_cleanly(run_in_process, home, args, code, says)


# a case of each kind, in a fresh process: the exit code, stdout and stderr as a shell sees them
WIRING = [
    ([*GENERATE, "--temperature", "nan"], 2, "--temperature"),  # typer's usage error
    ([*TRAIN, "--lr", "0"], 2, "--lr"),  # a config's UsageError
    (["generate", "no-such-run"], 4, "no run named 'no-such-run'"),  # a DataError
    (["fetch", "inputs/picture.png", "--name", "x"], 4, "binary file"),
    (["fetch", "--id", "1", "--delay", "0", "--mirror", "http://127.0.0.1:9"], 3, "refused"),
    (["train", "--resume", "cut-state"], 4, "cannot read the latest state"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "says"), WIRING, ids=[" ".join(c[0]) for c in WIRING])
def test_bad_input_fails_cleanly_in_a_fresh_process(home, args, code, says):
    assert (args, code, says) in CASES
    _fails_cleanly(run_cli, home, args, code, says)


# --- security: files in a run folder never run code ---------------------------------------


class _Planted:
    """Unpickling this creates a file: the proof that a pickle ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["last/state.pt", "model.safetensors", "last/model.safetensors"])
def test_a_pickle_planted_in_a_run_is_refused_without_running(home, tmp_path, target):
    import pickle
    import shutil

    run = tmp_path / "planted"
    shutil.copytree(home / "checkpoints" / "book-lstm", run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "status": "interrupted"}))
    marker = tmp_path / "pwned"
    with open(run / target, "wb") as f:
        pickle.dump({"x": _Planted(str(marker))}, f)
    torch.save({"step": _Planted(str(marker))}, tmp_path / "also.pt")  # a torch-style pickle too
    if target == "last/state.pt":
        shutil.copy(tmp_path / "also.pt", run / target)
        shutil.copy(tmp_path / "also.pt", run / "last" / "extra.pt")
        out = run_cli("train", "--resume", str(run), home=home)
    elif target == "model.safetensors":
        out = run_cli("generate", str(run), "--length", "10", home=home)
    else:
        out = run_cli("train", "--resume", str(run), home=home)
    assert out.returncode == 4, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not marker.exists()


# --- a full disk while saving ---------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_previous_state(tmp_path, monkeypatch, capsys):
    import errno
    import sys

    from authorgen import checkpoint
    from authorgen.cli import main

    home = tmp_path
    book = home / "book.txt"
    book.write_text(ENGLISH * 20, encoding="utf-8")
    monkeypatch.setenv("AUTHORGEN_HOME", str(home))
    real_save = checkpoint.save_file
    calls = []

    def failing_save(tensors, path):  # the disk fills up on the second evaluation's save
        calls.append(path)
        if len(calls) > 2:
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save(tensors, path)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["authorgen", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code

    assert run("fetch", str(book), "--name", "book", "-q") in (0, None)
    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    args = ("train", "book", "--steps", "20", "--eval-every", "10", "--layers", "1", "--hidden")
    code = run(*args, "16", "--embedding-dim", "8", "--context", "16", "--device", "cpu", "-q")
    err = capsys.readouterr().err
    assert code == 1 and "the disk is full" in err and "Traceback" not in err
    run_dir = home / "checkpoints" / "book-lstm"
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "last.tmp").exists()

    from authorgen.models import build_model

    loaded = checkpoint.load_run(run_dir)  # the best weights of step 10 load
    model = build_model(loaded.model.config)
    state = checkpoint.load_last(run_dir, model, torch.device("cpu"))
    assert state["step"] == 10  # the state saved before the disk filled


# --- nothing is written outside the corpora, checkpoints and cache folders ---------------------


@pytest.mark.slow
def test_a_whole_session_writes_only_into_corpora_checkpoints_and_the_cache(tmp_path):
    home, cwd, user = tmp_path / "home", tmp_path / "cwd", tmp_path / "user"
    for folder in (home, cwd, user):
        folder.mkdir()
    book = tmp_path / "book.txt"  # names from the header must not lead anywhere
    book.write_text(
        "Title: ../../../escape/../me\nAuthor: ../../outside/Evil\n\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK ESCAPE ***\n\n"
        + ENGLISH * 20
        + "\n*** END OF THE PROJECT GUTENBERG EBOOK ESCAPE ***\n"
    )
    unset = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR")
    env = {"HOME": str(user), **dict.fromkeys(unset)}  # the cache: AUTHORGEN_HOME/cache

    def run(*args):
        out = run_cli(*args, home=home, cwd=cwd, env=env)
        assert out.returncode == 0, out.stderr
        return out

    run("fetch", str(book))
    assert [p.name for p in (home / "corpora").iterdir()] == ["outside-evil"]
    work = json.loads((home / "corpora" / "outside-evil" / "corpus.json").read_text())["works"][0]
    assert work["title"] == "../../../escape/../me"  # kept as written, used only as a label
    assert work["file"].startswith("works/") and work["file"].count("/") == 1
    small = ["--layers", "1", "--hidden", "16", "--embedding-dim", "8", "--context", "16"]
    run("train", "outside-evil", "--steps", "20", "--eval-every", "10", *small, "--device", "cpu")
    run("generate", "outside-evil-lstm", "--length", "40", "-n", "2")
    run("eval", "outside-evil-lstm", "--samples", "1", "--length", "100")
    run("runs")
    assert sorted(p.name for p in home.iterdir()) == ["cache", "checkpoints", "corpora"]
    assert list(cwd.iterdir()) == [] and list(user.rglob("*")) == []
    assert (home / "checkpoints" / "outside-evil-lstm" / "loss.png").is_file()  # charts drawn
