"""Training and generation end to end: real corpora, real checkpoints, fresh processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from authorgen.checkpoint import load_run
from authorgen.config import SampleConfig
from authorgen.sample import generate
from helpers import data_file, default_sigint, run_cli

TINY = (
    "--layers",
    "2",
    "--dropout",
    "0",
    "--hidden",
    "48",
    "--embedding-dim",
    "16",
    "--batch-size",
    "16",
    "--context",
    "48",
    "--device",
    "cpu",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A corpus from Alice plus a tiny LSTM run trained for 60 steps (module-wide)."""
    home = tmp_path_factory.mktemp("home")
    alice = data_file("pg11-alices-adventures-in-wonderland.txt")
    assert run_cli("fetch", str(alice), "--name", "alice", home=home).returncode == 0
    result = run_cli(
        "train", "alice", *TINY, "--steps", "60", "--eval-every", "10", "--lr", "1e-2", home=home
    )
    assert result.returncode == 0, result.stderr
    return home, home / "checkpoints" / "alice-lstm", result


@pytest.mark.slow
def test_val_loss_falls_within_60_steps(trained):
    _, run_dir, _ = trained
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.4
    for row in rows:
        assert row["val_bpc"] == pytest.approx(row["val_loss"] / 0.6931471805599453)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["status"] == "finished"
    assert config["best"]["val_loss"] == min(r["val_loss"] for r in rows)
    assert config["data"]["split"].startswith("last 10%")


def test_run_directory_is_complete_and_train_prints_only_its_name_on_stdout(trained):
    _, run_dir, result = trained
    assert result.stdout == f"{run_dir.name}\n"
    assert "nats/char" in result.stderr
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.jsonl",
        "last/model.safetensors",
        "last/state.pt",
    ):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.tmp"))
    state = torch.load(run_dir / "last" / "state.pt", weights_only=True)
    assert state["step"] == 60


@pytest.mark.slow
def test_generation_is_reproducible_in_fresh_processes(trained):
    home, _, _ = trained
    args = ("generate", "alice-lstm", "--length", "120", "--temperature", "1.0")
    first = run_cli(*args, "--seed", "7", home=home)
    second = run_cli(*args, "--seed", "7", home=home)
    other = run_cli(*args, "--seed", "8", home=home)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout != other.stdout
    assert "seed 7" in first.stderr


@pytest.mark.slow
def test_stdout_holds_only_the_sample(trained):
    home, _, _ = trained
    args = ("generate", "alice-lstm", "--prompt", "Alice was", "--length", "80", "--seed", "1")
    result = run_cli(*args, home=home)
    assert result.returncode == 0, result.stderr
    body = result.stdout.removesuffix("\n")
    assert body.startswith("Alice was")
    assert len(body) == len("Alice was") + 80
    assert "seed" not in result.stdout and "seed 1" in result.stderr
    quiet = run_cli(*args, "--quiet", "--no-echo", home=home)
    assert quiet.stderr == ""
    assert quiet.stdout == result.stdout[len("Alice was") :]


@pytest.mark.slow
def test_greedy_at_temperature_zero_is_the_argmax_path(trained):
    home, run_dir, _ = trained
    a = run_cli(
        "generate",
        "alice-lstm",
        "--temperature",
        "0",
        "--seed",
        "1",
        "--length",
        "60",
        "--prompt",
        "The Queen",
        "--any-words",  # the model's own argmax, not the known-words rule's
        "--no-ngrams",  # nor the mix with the n-gram counts
        home=home,
    )
    b = run_cli(
        "generate",
        "alice-lstm",
        "--temperature",
        "0",
        "--seed",
        "2",
        "--length",
        "60",
        "--prompt",
        "The Queen",
        "--any-words",
        "--no-ngrams",
        home=home,
    )
    assert a.stdout == b.stdout
    run = load_run(run_dir)  # in this process, by hand: feed the prompt, then always the argmax
    ids = run.tokenizer.encode("The Queen")
    with torch.no_grad():
        logits, state = run.model(torch.tensor([ids]))
        out = []
        for _ in range(60):
            masked = logits[0, -1].clone()
            masked[run.tokenizer.unk_id] = -float("inf")
            nxt = int(masked.argmax())
            out.append(nxt)
            logits, state = run.model(torch.tensor([[nxt]]), state)
    assert a.stdout == "The Queen" + run.tokenizer.decode(out) + "\n"


@pytest.mark.slow
def test_samples_are_separated_and_each_equals_its_own_seed(trained):
    home, run_dir, _ = trained
    both = run_cli(
        "generate",
        "alice-lstm",
        "-n",
        "2",
        "--seed",
        "5",
        "--length",
        "50",
        "--no-echo",
        "--prompt",
        "x",
        home=home,
    )
    assert both.returncode == 0, both.stderr
    run = load_run(run_dir)
    config = SampleConfig(length=50)  # the command's defaults
    index = run.originality_index()  # the known-words rule
    counts = run.ngrams()  # and the n-gram counts mixed in
    assert counts is not None
    expected = [
        "".join(generate(run.model, run.tokenizer, "x", config, seed, index=index, ngrams=counts))
        for seed in (5, 6)
    ]
    assert both.stdout == expected[0] + "\n%\n" + expected[1] + "\n"


@pytest.mark.slow
def test_prompt_from_stdin(trained):
    home, _, _ = trained
    piped = run_cli(
        "generate", "alice-lstm", "--length", "30", "--seed", "3", home=home, stdin="Down the"
    )
    dash = run_cli(
        "generate",
        "alice-lstm",
        "--length",
        "30",
        "--seed",
        "3",
        "--prompt",
        "-",
        home=home,
        stdin="Down the",
    )
    assert piped.stdout.startswith("Down the") and piped.stdout == dash.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gru", "rnn"])
def test_gru_and_simple_rnn_train_and_generate(tmp_path, model):
    text = data_file("tinyshakespeare.txt").read_text()[:40_000]
    (tmp_path / "s.txt").write_text(text)
    assert run_cli("fetch", str(tmp_path / "s.txt"), "--name", "s", home=tmp_path).returncode == 0
    result = run_cli(
        "train",
        "s",
        "--model",
        model,
        *TINY,
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--lr",
        "1e-2",
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = [
        json.loads(x)
        for x in (tmp_path / "checkpoints" / f"s-{model}" / "metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    out = run_cli(
        "generate", f"s-{model}", "--length", "40", "--seed", "0", "--json", home=tmp_path
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert len(row["text"]) == row["chars"] == 40 and row["stopped"] == "length"


@pytest.mark.slow
@pytest.mark.slow
def test_ctrl_c_saves_the_state_and_exits_130(tmp_path):
    (tmp_path / "s.txt").write_text(data_file("tinyshakespeare.txt").read_text()[:40_000])
    assert run_cli("fetch", str(tmp_path / "s.txt"), "--name", "s", home=tmp_path).returncode == 0
    env = {**os.environ, "AUTHORGEN_HOME": str(tmp_path), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "authorgen",
            "train",
            "s",
            *TINY,
            "--steps",
            "1000000",
            "--eval-every",
            "5",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )
    metrics = tmp_path / "checkpoints" / "s-lstm" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err and out == ""
    run_dir = metrics.parent
    state = torch.load(run_dir / "last" / "state.pt", weights_only=True)
    assert state["step"] >= 10
    assert json.loads((run_dir / "config.json").read_text())["status"] == "interrupted"
    assert load_run(run_dir, last=True).model is not None
