"""Issue 19: every device a user has (an Apple GPU too), the CPU's threads, and the speed probe
the CPU plan rests on."""

from __future__ import annotations

import json

import pytest
import torch

from authorgen import probe
from authorgen.config import ModelConfig
from authorgen.devices import resolve_device
from authorgen.errors import UsageError
from helpers import run_cli

CPU = torch.device("cpu")


def test_auto_picks_cuda_then_an_apple_gpu_then_the_cpu(monkeypatch):
    """MPS has not run on Apple hardware here: its availability is faked."""
    cuda, mps = [False], [True]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda[0])
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps[0])
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")
    cuda[0] = True
    assert resolve_device("auto") == torch.device("cuda:0")
    cuda[0] = mps[0] = False
    assert resolve_device("auto") == CPU
    with pytest.raises(UsageError, match="--device mps: PyTorch reports no Apple GPU"):
        resolve_device("mps")


def test_threads_is_what_the_run_records(alice_home):
    done = run_cli(
        "train", "alice", "--preset", "tiny", "--steps", "3", "--device", "cpu",
        "--threads", "1", "--name", "one-thread", home=alice_home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads((alice_home / "checkpoints" / "one-thread" / "config.json").read_text())
    assert config["threads"] == 1


def _candidates(hidden_b: int = 32) -> dict:
    small = ModelConfig(vocab_size=20, layers=1, hidden=16, embedding_dim=8)
    return {"a": (small, 2, 8), "b": (ModelConfig(vocab_size=20, hidden=hidden_b), 2, 8)}


def test_the_probe_measures_a_machine_once_and_keeps_it(tmp_path):
    """(Time enough for every candidate: a few steps each, at most 30.)"""
    first, measured = probe.speeds(_candidates(), CPU, False, tmp_path, budget_s=60)
    assert measured and all(speed["fp32"] > 0 and "bf16" not in speed for speed in first.values())
    again, measured = probe.speeds(_candidates(), CPU, False, tmp_path, budget_s=60)
    assert not measured and again == first
    stored = json.loads((tmp_path / probe.PROBE_FILE).read_text())
    assert list(stored) == [probe.machine_key(CPU, 20)]
    # a candidate of another shape is measured; the one kept is not
    third, measured = probe.speeds(_candidates(hidden_b=48), CPU, False, tmp_path, budget_s=60)
    assert measured and third["a"] == first["a"]
    assert (
        len(json.loads((tmp_path / probe.PROBE_FILE).read_text())[probe.machine_key(CPU, 20)]) == 3
    )


def test_a_probe_out_of_time_gives_the_rest_no_speed():
    assert probe.measure(_candidates(), CPU, False, budget_s=0.0) == {
        "a": {"fp32": 0.0},
        "b": {"fp32": 0.0},
    }
