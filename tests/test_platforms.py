"""Issue 31: where users are. A device without float64 (Apple's MPS, as far as a CPU can show
it: float64_check.py), Python 3.10's asyncio timeout, and Windows' console encodings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import authorgen
from authorgen.config import SampleConfig
from float64_check import NoFloat64OnDevice, created_on_a_device
from helpers import _command_env, data_file, run_cli, run_in_process
from windows_files import windows_rules

SAMPLERS = [
    ["--top-k", "20"],
    ["--top-p", "0.9", "--repetition-penalty", "1.2"],
    ["--min-p", "0.05", "--no-repeat-ngram", "4"],
    ["--typical-p", "0.9", "--dry", "1"],
    ["--eta", "0.01", "--max-copy", "30", "--until", "sentence"],
    ["--temperature", "0", "--no-ngrams", "--any-words"],
]


@pytest.fixture
def device_check(monkeypatch):
    """Every model built is watched; the check is on in this thread and the engine's."""
    import authorgen.checkpoint
    import authorgen.models
    import authorgen.train
    from authorgen.serve.engine import Engine

    mode, build = NoFloat64OnDevice(), authorgen.models.build_model
    for module in (authorgen.models, authorgen.train, authorgen.checkpoint):
        monkeypatch.setattr(module, "build_model", lambda *a, **k: mode.watch(build(*a, **k)))
    work = Engine._work

    def checked_work(self):
        with mode:
            work(self)

    monkeypatch.setattr(Engine, "_work", checked_work)
    with mode:
        yield mode


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_a_run_through_makes_no_float64_on_the_models_device(home, device_check, model):
    from authorgen.serve.engine import Engine

    text = data_file("pg11-alices-adventures-in-wonderland.txt")
    assert run_cli("fetch", str(text), "--name", "alice", "-q", home=home).returncode == 0
    trained = run_in_process(
        "train", "alice", "--model", model, "--layers", "1", "--embedding-dim", "16",
        "--steps", "12", "--eval-every", "6", "--context", "16", "--batch-size", "4",
        "--name", "run", "--device", "cpu", home=home,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    for args in SAMPLERS:
        done = run_in_process("generate", "run", "--length", "60", "-n", "2", *args, home=home)
        assert done.returncode == 0, (args, done.stderr)
    judged = run_in_process("eval", "run", "--samples", "8", "--length", "100", home=home)
    assert judged.returncode == 0, judged.stderr

    engine = Engine(home / "checkpoints", device="cpu")
    engine.start()

    async def one_request() -> list:
        ticket = engine.submit("run", "Alice ", SampleConfig(length=30, seed=1), [1, 2])
        items: list = []
        while not items or items[-1][0] not in ("end", "error"):
            items += await asyncio.wait_for(ticket.queue.get(), 60)
        return items

    try:
        items = asyncio.run(one_request())
    finally:
        engine.stop()
    assert [i[0] for i in items].count("sample") == 2, items
    assert sorted(set(device_check.found)) == []


def test_the_check_sees_float64_on_the_device():
    """The check fails on what MPS refuses, and lets the host do float64."""
    import torch

    mode = NoFloat64OnDevice()
    model = mode.watch(torch.nn.Linear(3, 2))
    with mode:
        logits = model(torch.ones(1, 3))
        logits.cpu().double().softmax(-1)  # on the host: fine
        assert mode.found == []
        logits.double()
    assert mode.found == ["TensorBase.double"]
    with mode:
        logits.to("cpu", torch.float64)  # moved and widened at once: where is the backend's say
    assert len(mode.found) == 2


def test_no_float64_tensor_is_created_on_a_device():
    assert created_on_a_device(Path(authorgen.__file__).parent) == []


def test_every_python_admitted_raises_the_timeout_the_api_catches():
    """Python 3.10's asyncio.wait_for raised asyncio.TimeoutError, which the API's built-in
    TimeoutError did not catch; 3.10 is not run here, so the floor is 3.11, where they are one."""
    import tomllib

    root = Path(authorgen.__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.11"
    assert asyncio.TimeoutError is TimeoutError


def test_polish_comes_out_whole_through_a_cp1252_console(home):
    """Windows with its console's code page (cp1252) and no PYTHONIOENCODING: the streams are
    cp1252 when the command starts; what it writes must still be the text, in UTF-8."""
    text = home / "Zażółć gęślą jaźń.txt"
    text.write_text("Zażółć gęślą jaźń. " * 400, encoding="utf-8")
    assert run_cli("fetch", str(text), "--name", "pl", "-q", home=home).returncode == 0
    script = (
        "import io, sys\n"
        "sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding='cp1252')\n"
        "sys.stderr = io.TextIOWrapper(sys.stderr.buffer, encoding='cp1252')\n"
        "from authorgen.cli import main\n"
        "sys.argv = ['authorgen', 'corpora', 'show', 'pl', '--json']\n"
        "main()\n"
    )
    env = _command_env(home, {"PYTHONIOENCODING": None, "PYTHONUTF8": None})
    env.pop("PYTHONIOENCODING", None), env.pop("PYTHONUTF8", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert "Zażółć gęślą jaźń" in json.dumps(
        json.loads(done.stdout.decode("utf-8")), ensure_ascii=False
    )


class _Socket:
    def __init__(self):
        self.options = []

    def setsockopt(self, level, name, value):
        self.options.append((level, name, value))


def test_the_port_is_claimed_exclusively_on_windows(monkeypatch):
    from authorgen.serve.server import claim_port

    here = _Socket()
    claim_port(here)  # Linux: SO_REUSEADDR, which never lets two servers share a port
    assert here.options == [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)  # as on Windows
    windows = _Socket()
    claim_port(windows)
    assert windows.options == [(socket.SOL_SOCKET, -5, 1)]


def test_a_second_server_on_a_taken_port_is_refused():
    from authorgen.errors import UsageError
    from authorgen.serve.server import listen

    first = listen("127.0.0.1", 0)
    try:
        with pytest.raises(UsageError, match="is in use; choose another with --port"):
            listen("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


def test_make_demo_generates_with_the_name_train_printed(home):
    """On a GPU the plan picks a transformer, and the run is CORPUS-transformer: the demo must
    not assume CORPUS-lstm. train prints the name it made; the demo generates with that."""
    root = Path(authorgen.__file__).resolve().parents[1]
    recipe = subprocess.run(
        ["make", "-n", "demo", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True
    ).stdout
    train = next(line for line in recipe.splitlines() if " train " in line)
    assert train.startswith("run=$(") and '"$run"' in recipe.split(train, 1)[1]
    text = data_file("pg11-alices-adventures-in-wonderland.txt")
    assert run_cli("fetch", str(text), "--name", "alice", "-q", home=home).returncode == 0
    trained = run_cli(
        "train", "alice", "--model", "transformer", "--steps", "2", "--device", "cpu", home=home
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout == "alice-transformer\n"


def test_an_apple_gpu_gets_its_own_plan_named_for_it():
    from authorgen import plan
    from authorgen.config import TrainOptions

    options = TrainOptions(time_s=300)
    for tokens, preset in ((20_000, "transformer-tiny"), (1_000_000, "transformer-small")):
        mps = plan.choose(tokens, "char", "mps", options)
        cuda = plan.choose(tokens, "char", "cuda", options)
        assert any("an Apple GPU (MPS" in r and "CUDA GPU and" not in r for r in mps.reasons)
        assert mps.model.embedding_dim == plan.PRESETS[preset]["embedding_dim"]
        assert mps.train.precision == "auto"  # fp32: bf16 on MPS is not chosen unmeasured
    assert cuda.model.embedding_dim > mps.model.embedding_dim  # a rung smaller on the Mac


# A reader of a run, as a server is one: it maps the run's index and n-gram counts (and, asked,
# keeps its weights file open), answers from them once, then again for every line it reads.
HOLDER = """
import sys
from authorgen.checkpoint import load_run
run = load_run(sys.argv[1])
index, counts = run.originality_index(), run.ngrams()
weights = open(run.path / "model.safetensors", "rb") if sys.argv[2:] == ["weights"] else None
text = "Alice was beginning to get very tired of sitting by her sister"
def answer():
    p, _ = counts.score(run.tokenizer.encode(text))
    return f"{index.report(text)['longest_copy_chars']} {p.sum():.9f}"
print(answer(), flush=True)
for line in sys.stdin:
    print(answer(), flush=True)
"""


@contextlib.contextmanager
def holder(home: Path, run_dir: Path, *extra: str):
    """A reader of `run_dir` in another process; yields a function that asks it to answer."""
    env = _command_env(home, None)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    first = proc.stdout.readline()

    def ask() -> str:
        proc.stdin.write("again\n")
        proc.stdin.flush()
        return proc.stdout.readline()

    try:
        assert first.strip(), "the reader could not open the run"
        yield first, ask
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def _maps(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())["maps"]


@pytest.fixture
def trained_run(home):
    text = data_file("pg11-alices-adventures-in-wonderland.txt")
    assert run_cli("fetch", str(text), "--name", "alice", "-q", home=home).returncode == 0
    args = ("train", "alice", "--preset", "tiny", "--steps", "3", "--name", "run")
    assert run_in_process(*args, home=home).returncode == 0
    return args, home / "checkpoints" / "run"


def test_a_run_is_trained_again_while_a_reader_maps_its_files(home, trained_run):
    """Windows cannot move a folder while a file in it is mapped: training again under the
    name writes new mapped folders beside the held ones, which go once they are free."""
    args, run_dir = trained_run
    old = _maps(run_dir)
    with holder(home, run_dir) as (first, ask):
        with windows_rules():
            with pytest.raises(PermissionError):  # the reader really holds them
                os.replace(run_dir / old["index"], run_dir.with_name("moved"))
            done = run_in_process(*args[:-4], "--steps", "5", "--name", "run", "--force", home=home)
        assert done.returncode == 0, done.stderr
        new = _maps(run_dir)
        assert new != old and all((run_dir / name).is_dir() for name in new.values())
        assert all((run_dir / name).is_dir() for name in old.values())  # still held
        assert ask() == first  # the reader's maps are whole
        config = json.loads((run_dir / "config.json").read_text())
        assert config["result"]["steps"] == 5
    again = run_in_process("generate", "run", "--length", "40", "--seed", "1", "--json", home=home)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["originality"] is not None
    with windows_rules():  # nothing holds the old folders now: the next replacement drops them
        done = run_in_process(*args, "--force", home=home)
    assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in run_dir.iterdir() if p.name.startswith(("index", "ngrams")))
    assert left == sorted(_maps(run_dir).values())
    assert not list(run_dir.parent.glob(".run*"))


def test_a_replacement_that_fails_puts_the_held_run_back(home, trained_run, monkeypatch):
    import authorgen.train

    args, run_dir = trained_run
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}

    def cut_short(split, model, train_config, run_dir, **kwargs):
        (run_dir / "config.json").write_text("{}")  # the new run had begun
        (run_dir / "index-0badc0de").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(authorgen.train, "train", cut_short)
    with holder(home, run_dir) as (first, ask), windows_rules():
        done = run_in_process(*args, "--force", home=home)
        assert done.returncode == 130, done.stderr
        assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
        assert not (run_dir / "index-0badc0de").exists()
        assert ask() == first
    assert not list(run_dir.parent.glob(".run*"))
    again = run_in_process("generate", "run", "--length", "40", "--seed", "1", "--json", home=home)
    assert again.returncode == 0 and json.loads(again.stdout)["originality"] is not None


def test_replacing_a_run_whose_weights_are_open_is_one_line_and_keeps_it(home, trained_run):
    """A file that is not a mapped folder (the weights, open in another program) cannot stay
    behind: the replacement is refused, and the run is as it was."""
    args, run_dir = trained_run
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with holder(home, run_dir, "weights"), windows_rules():
        done = run_in_process(*args, "--force", home=home)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is open in another program (model.safetensors)" in done.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert not list(run_dir.parent.glob(".run*"))


def test_a_run_made_before_its_mapped_folders_were_named_is_read_and_replaced(home, trained_run):
    args, run_dir = trained_run
    gen = ("generate", "run", "--length", "60", "--seed", "3", "--json")
    named = run_in_process(*gen, home=home)
    config = json.loads((run_dir / "config.json").read_text())
    for kind, name in config.pop("maps").items():
        os.replace(run_dir / name, run_dir / kind)
    (run_dir / "config.json").write_text(json.dumps(config))
    legacy = run_in_process(*gen, home=home)
    assert legacy.returncode == 0, legacy.stderr
    legacy, named = json.loads(legacy.stdout), json.loads(named.stdout)
    assert legacy["ngrams"] is True and legacy["originality"] is not None
    assert (legacy["text"], legacy["originality"]) == (named["text"], named["originality"])
    assert run_in_process(*args, "--force", home=home).returncode == 0
    assert not (run_dir / "index").exists() and not (run_dir / "ngrams").exists()


def test_a_served_run_is_trained_again_under_windows_rules(home, trained_run):
    """`train --force` of the run a server has open, as a Windows user does it: the server
    then writes what `generate` writes with the new run, with its originality reports."""
    from serving import Server

    args, run_dir = trained_run
    body = {"model": "run", "prompt": "Alice ", "length": 40, "seed": 3, "ngrams": False}
    cli = ("generate", "run", "--prompt", "Alice ", "--length", "40", "--seed", "3", "--no-ngrams")
    with Server(home) as server:
        assert server.post("/v1/completions", {**body, "ngrams": True}).status_code == 200
        before = server.post("/v1/completions", body).json()["choices"][0]
        assert before["originality"] is not None
        with windows_rules():
            done = run_in_process(
                *args[:-4], "--steps", "30", "--name", "run", "--force", home=home
            )
        assert done.returncode == 0, done.stderr
        after = server.post("/v1/completions", body).json()["choices"][0]
        assert server.stop()[0] == 0
    assert after["originality"] is not None
    assert after["text"] == json.loads(run_cli(*cli, "--json", home=home).stdout)["text"]
    assert after["text"] != before["text"]
    # the server held the old ones
    assert len(list(run_dir.glob("index-*"))) == len(list(run_dir.glob("ngrams-*"))) == 2
