"""How fast this machine trains: the tokens per second of the plan's candidate models, in fp32
and (where the device computes it) bf16, measured in at most about two seconds and remembered.

`authorgen train` with no size options asks `speeds` before `plan.choose`: the plan then picks
the model and precision that the measured speed and the budget favour, instead of assuming the
machine it was tuned on. A measurement is a few real training steps (forward, backward, AdamW)
of each candidate at its own batch and context, on random tokens; the first step of each warms
the kernels and is not counted.

The answers are kept in `probe.json` in the cache folder, under a key naming the processor, the
thread count, the device and the torch version, so a machine is measured once; `--probe` (or a
new torch) measures again.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from authorgen.config import ModelConfig
from authorgen.files import atomic_write_json
from authorgen.models import build_model

BUDGET_S = 2.0  # the whole probe, every candidate and precision together
PROBE_FILE = "probe.json"


def machine_key(device: torch.device, vocab: int) -> str:
    """What a measurement depends on: processor, threads, device, torch, vocabulary size."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{_cpu_name()} x{torch.get_num_threads()}"
    return f"{where} | {device.type} | torch {torch.__version__} | vocab {vocab}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tokens_per_s(
    config: ModelConfig,
    batch: int,
    context: int,
    dtype: torch.dtype | None,
    device: torch.device,
    budget_s: float,
) -> float:
    """Training tokens per second of `config` at `batch` x `context` under autocast to `dtype`
    (None: fp32): steps are timed until `budget_s` is spent (at least two after a warm-up)."""
    generator = torch.Generator().manual_seed(0)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, config.vocab_size, (batch, context + 1), generator=generator).to(device)
    spent, timed, steps = 0.0, 0.0, 0
    while steps < 3 or (spent < budget_s and steps < 30):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, config.vocab_size), x[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        took = time.perf_counter() - t0
        spent += took
        if steps:  # the first step builds kernels and allocates: not counted
            timed += took
        steps += 1
    return batch * context * (steps - 1) / timed


def _warm_up(device: torch.device) -> None:
    """A tiny training step first: torch's one-time start-up is not any candidate's speed."""
    tokens_per_s(
        ModelConfig(vocab_size=8, layers=1, hidden=8, embedding_dim=8), 1, 4, None, device, 0
    )


def measure(
    candidates: dict[str, tuple[ModelConfig, int, int]],
    device: torch.device,
    bf16: bool,
    budget_s: float = BUDGET_S,
) -> dict[str, dict[str, float]]:
    """{candidate: {"fp32": tokens/s, "bf16": tokens/s}} for (model, batch, context) candidates,
    smallest first; bf16 only when `bf16` (the device has it), and left out where its kernels
    fail. Candidates the budget leaves no time for get 0 tokens/s: a machine too slow to
    measure them in time is too slow to train them well."""
    precisions = {"fp32": None, **({"bf16": torch.bfloat16} if bf16 else {})}
    jobs = [(name, label) for name in candidates for label in precisions]
    _warm_up(device)
    deadline = time.perf_counter() + budget_s
    speeds: dict[str, dict[str, float]] = {name: {} for name in candidates}
    for i, (name, label) in enumerate(jobs):
        left = deadline - time.perf_counter()
        if left <= 0:
            speeds[name].setdefault("fp32", 0.0)
            continue
        config, batch, context = candidates[name]
        try:
            speed = tokens_per_s(
                config, batch, context, precisions[label], device, left / (len(jobs) - i)
            )
        except RuntimeError:  # no bf16 kernel for this model here: fp32 only
            continue
        speeds[name][label] = round(speed, 1)
    return speeds


def speeds(
    candidates: dict[str, tuple[ModelConfig, int, int]],
    device: torch.device,
    bf16: bool,
    cache: Path,
    fresh: bool = False,
    budget_s: float = BUDGET_S,
) -> tuple[dict[str, dict[str, float]], bool]:
    """The candidates' speeds on this machine from `cache`/probe.json, measuring those it lacks
    (all of them when `fresh`). Returns the speeds and whether any was measured now."""
    vocab = next(iter(candidates.values()))[0].vocab_size
    key = machine_key(device, vocab)
    known = _remembered(cache)
    mine = {} if fresh else dict(known.get(key, {}))
    specs = {name: spec(*candidate) for name, candidate in candidates.items()}
    missing = {name: c for name, c in candidates.items() if specs[name] not in mine}
    if missing:
        measured = measure(missing, device, bf16, budget_s)
        mine.update({specs[name]: speed for name, speed in measured.items()})
        known[key] = mine
        _remember(cache, known)
    return {name: mine[specs[name]] for name in candidates}, bool(missing)


def _remembered(cache: Path) -> dict:
    """Every machine's measurements kept in `cache`/probe.json (none when it is unreadable)."""
    try:
        return json.loads((Path(cache) / PROBE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _remember(cache: Path, known: dict) -> None:
    """Keep the measurements; a read-only cache costs a probe next time, nothing more."""
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(cache) / PROBE_FILE, known)
    except OSError:
        pass


def spec(config: ModelConfig, batch: int, context: int) -> str:
    """A candidate as remembered: its shape, so a changed candidate is measured again."""
    sizes = ("model", "layers", "hidden", "embedding_dim", "heads", "mlp_dim")
    return " ".join(f"{k}={getattr(config, k)}" for k in sizes) + f" batch={batch}x{context}"


def int8_is_faster(device: torch.device, cache: Path) -> bool:
    """Whether this machine multiplies a token by int8 weights (PyTorch's weight-only kernel)
    faster than by fp32 ones, for a layer of a generation-sized transformer; measured once
    (about 0.1 s) and kept with the training speeds."""
    if device.type != "cpu" or not hasattr(torch, "_weight_int8pack_mm"):
        return False
    known = _remembered(cache)
    mine = known.setdefault(machine_key(device, 0), {})
    if "generation int8 speed-up" not in mine:
        mine["generation int8 speed-up"] = round(_int8_speed_up(), 3)
        _remember(cache, known)
    return mine["generation int8 speed-up"] > 1.2


def _int8_speed_up(rows: int = 1536, cols: int = 384, calls: int = 40, rounds: int = 5) -> float:
    """fp32 time / int8 time of a token through a rows x cols layer (0 where int8 fails): the
    best of `rounds` interleaved rounds each way, as a busy machine only ever slows one down."""
    weight, x = torch.randn(rows, cols), torch.randn(1, cols)
    scale = weight.abs().amax(dim=1) / 127
    packed = torch.round(weight / scale[:, None]).to(torch.int8)
    ways = {
        "fp32": lambda: F.linear(x, weight),
        "int8": lambda: torch._weight_int8pack_mm(x.bfloat16(), packed, scale.bfloat16()),
    }
    took = {name: float("inf") for name in ways}
    try:
        for way in ways.values():
            for _ in range(10):
                way()
        for _ in range(rounds):
            for name, way in ways.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    way()
                took[name] = min(took[name], time.perf_counter() - t0)
    except RuntimeError:
        return 0.0
    return took["fp32"] / took["int8"]
