"""Where a model runs and in what precision: the device by name, bf16 autocast, and moving a
recurrent state between devices."""

from __future__ import annotations

import contextlib

import torch

from authorgen.config import GENERATION_PRECISIONS
from authorgen.errors import UsageError, first_line


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" is CUDA when available, then an Apple GPU (MPS), else the CPU; under torchrun,
    this process's GPU.

    Raises:
        UsageError: when CUDA or MPS is asked for and not there.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    if name == "mps" and not _mps_available():
        raise UsageError(
            "--device mps: PyTorch reports no Apple GPU (MPS needs a Mac with Apple silicon and "
            "macOS 12.3 or later); use --device cpu"
        )
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def use_threads(threads: int | None) -> None:
    """Let torch's CPU work use `threads` threads (None: its default, one per core). Two jobs
    on one machine each with all the cores oversubscribe them and both crawl; give each a
    share."""
    if threads is not None:
        torch.set_num_threads(threads)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX on x86; Linux reports it).
    Elsewhere PyTorch emulates bf16, often slower than fp32; the speed probe decides then."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def free_memory(device: torch.device) -> int | None:
    """Bytes of memory a run may use on `device`: the GPU's free memory, or the memory the
    system reports available (None where neither is known)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for --precision bf16, or auto on a CUDA GPU that has it; None: plain fp32."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device: torch.device):
    """A context that runs the forward pass in `dtype` (a no-op for None: fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def check_precision(model, precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`, once a tiny forward pass shows that the
    device has kernels for it.

    Raises:
        UsageError: in one line, when it has none (oneDNN's bf16 LSTM needs AVX512-BF16).
    """
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return None
    try:
        with torch.no_grad(), autocast(dtype, device):
            model(torch.zeros(1, 2, dtype=torch.long, device=device))
    except RuntimeError as exc:
        raise UsageError(
            f"--precision {precision}: this {device.type.upper()} cannot run the "
            f"{model.config.model} in bf16 ({first_line(exc)[:120]}); use --precision fp32"
        ) from None
    return dtype


def generation_weights(precision: str, model_kind: str, device: torch.device, cache) -> str:
    """The weights a run generates with: "int8" for a transformer on a CPU that is faster with
    them (auto, measured once per machine) or when asked, else "fp32".

    Raises:
        UsageError: for an unknown precision, or int8 where it cannot be used.
    """
    if precision not in GENERATION_PRECISIONS:
        raise UsageError(
            f"--precision must be one of {', '.join(GENERATION_PRECISIONS)} (got {precision!r})"
        )
    fits = model_kind == "transformer" and device.type == "cpu"
    if precision == "int8" and not fits:
        raise UsageError(
            "--precision int8: int8 weights are for a transformer run on the CPU (this run's "
            f"model is {model_kind}, on {device.type}); use --precision fp32"
        )
    if precision == "auto":
        from authorgen.probe import int8_is_faster

        return "int8" if fits and int8_is_faster(device, cache) else "fp32"
    return precision


def state_to(state, device: torch.device | str):
    """A recurrent state (a tensor, a tuple of tensors, or None) on `device`."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s.to(device) for s in state)
    return state.to(device)
