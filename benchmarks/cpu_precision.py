"""bf16 against fp32 on this CPU: a matmul, and training steps of an LSTM and a transformer.

    python benchmarks/cpu_precision.py              # medians of 5 steps
    python benchmarks/cpu_precision.py --steps 20

bf16 pays on processors with AVX512-BF16 or AMX; elsewhere PyTorch emulates it. oneDNN's LSTM
has no bf16 kernel without them, so that row may say "not supported". Emulated bf16 can be 40
times slower than fp32, hence the small sizes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from authorgen.config import ModelConfig
from authorgen.models import build_model


def matmul_gflops(dtype: torch.dtype, n: int = 512, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def train_tokens_per_s(config: ModelConfig, batch: int, context: int, dtype, steps: int) -> float:
    """Median tokens/s of training steps under autocast to `dtype` (None: plain fp32)."""
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, config.vocab_size, (batch, context + 1))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, config.vocab_size), x[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:  # the first steps warm the allocator and oneDNN's kernel cache
            times.append(time.perf_counter() - t0)
    return batch * context / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    row: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    row["matmul_gflops"] = {
        "fp32": round(matmul_gflops(torch.float32), 1),
        "bf16": round(matmul_gflops(torch.bfloat16), 1),
    }
    models = {
        "lstm 2x256, 4 x 64": (ModelConfig(vocab_size=65), 4, 64),
        "transformer 4x4x128, 2 x 128": (
            ModelConfig(
                model="transformer", vocab_size=65, layers=4, heads=4, embedding_dim=128,
                mlp_dim=512, context=128,
            ),
            2,
            128,
        ),
    }  # fmt: skip
    for name, (config, batch, context) in models.items():
        speeds = {}
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            try:
                speeds[label] = round(train_tokens_per_s(config, batch, context, dtype, args.steps))
            except RuntimeError as exc:
                speeds[label] = f"not supported ({str(exc).splitlines()[0][:80]})"
        row[name] = speeds
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
