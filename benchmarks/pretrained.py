"""Pretrained models at their real sizes (issue 30), with random weights of the right shapes:
the time of a fine-tuning step and its peak memory, every weight trained or low-rank adapters
of rank 8 (train-lora), and generation's tokens/s with fp32 and int8 weights, and with
adapters kept and applied rather than merged (generate-lora), on this machine.

Shapes: GPT-2 small (124M: 12 layers, 768 wide, 12 heads, MLP 3072, learned positions,
50,257 tokens), SmolLM2-135M (Llama: 30 layers, 576 wide, 9 heads sharing 3 of keys and
values, MLP 1536, 49,152 tokens) and Pythia-160M (GPT-NeoX: 12 layers, 768 wide, 12 heads,
MLP 3072, 50,304 tokens, an output layer of its own). Generation with learned positions
(GPT-2) past the context reads the last half-context again: `--tokens 400` measures that.
Each measurement runs in a fresh process, so its peak memory (max RSS) is its own.

    python benchmarks/pretrained.py                  # every shape, fp32 and bf16
    python benchmarks/pretrained.py --only smollm2-135m --steps 3
    python benchmarks/pretrained.py --what train-lora

One JSON line per measurement goes to stdout, a table to stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHAPES = {
    "gpt2-124m": {
        "vocab_size": 50_257, "embedding_dim": 768, "layers": 12, "heads": 12, "mlp_dim": 3072,
        "variant": {"norm_bias": True, "bias": True, "mlp": "gelu_tanh", "positions": "learned"},
    },
    "smollm2-135m": {
        "vocab_size": 49_152, "embedding_dim": 576, "layers": 30, "heads": 9, "mlp_dim": 1536,
        "variant": {"kv_heads": 3, "norm": "rms", "norm_eps": 1e-5, "mlp": "swiglu",
                    "rope_theta": 100_000.0},
    },
    "pythia-160m": {
        "vocab_size": 50_304, "embedding_dim": 768, "layers": 12, "heads": 12, "mlp_dim": 3072,
        "variant": {"norm_bias": True, "bias": True, "rotary_fraction": 0.25, "parallel": True,
                    "tied": False},
    },
}  # fmt: skip


def measure(shape: str, what: str, precision: str, batch: int, context: int, steps: int):
    """One measurement, in this process."""
    import torch

    from authorgen.config import ModelConfig
    from authorgen.models import build_model, count_parameters

    torch.manual_seed(0)
    config = ModelConfig(model="transformer", context=context, **SHAPES[shape])
    model = build_model(config)
    params = count_parameters(model)
    dtype = torch.bfloat16 if precision == "bf16" else None
    row = {"shape": shape, "what": what, "precision": precision, "params": params}
    if what.startswith("train"):
        if what == "train-lora":  # adapters of rank 8, the rest frozen
            from authorgen.lora import add_adapters

            row["trained"] = add_adapters(model, 8)
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=1e-4, fused=False)
        ids = torch.randint(0, config.vocab_size, (batch, context + 1))
        times = []
        for _ in range(steps + 1):  # the first step warms up
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                logits, _ = model(ids[:, :-1])
                loss = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, config.vocab_size), ids[:, 1:].reshape(-1)
                )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        step = sorted(times[1:])[len(times[1:]) // 2]
        row.update(batch=batch, context=context, step_s=round(step, 3),
                   tokens_per_s=round(batch * context / step))  # fmt: skip
    else:
        model.eval()
        if what == "generate-lora":  # adapters of rank 8 kept beside the weights, applied
            from authorgen.lora import add_adapters

            add_adapters(model, 8)
        if what == "generate-int8":
            model.int8_weights()
        prompt = torch.randint(0, config.vocab_size, (1, 32))
        with torch.no_grad():
            _, cache = model(prompt)
            token = prompt[:, -1:]
            for _ in range(8):  # warm up
                logits, cache = model(token, cache)
            start = time.perf_counter()
            for _ in range(steps):
                logits, cache = model(token, cache)
                token = logits[:, -1:].argmax(-1)
            elapsed = time.perf_counter() - start
        row.update(tokens_per_s=round(steps / elapsed, 1))
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(SHAPES), action="append")
    parser.add_argument("--steps", type=int, default=3, help="training steps measured")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated, measured")
    parser.add_argument("--what", action="append", help="only these (train, train-lora, ...)")
    parser.add_argument(
        "--one", nargs=3, metavar=("SHAPE", "WHAT", "PRECISION"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        shape, what, precision = args.one
        steps = args.steps if what.startswith("train") else args.tokens
        print(json.dumps(measure(shape, what, precision, args.batch, args.context, steps)))
        return
    rows = []
    for shape in args.only or SHAPES:
        runs = [("train", "fp32"), ("train", "bf16"), ("train-lora", "fp32")]
        runs += [("train-lora", "bf16"), ("generate", "fp32"), ("generate-int8", "fp32")]
        runs.append(("generate-lora", "fp32"))
        for what, precision in runs:
            if args.what and what not in args.what:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--one", shape, what, precision, "--steps",
                 str(args.steps), "--batch", str(args.batch), "--context", str(args.context),
                 "--tokens", str(args.tokens)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row = json.loads(out.stdout)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(
        "| shape | params | what | precision | s/step | tokens/s | peak RSS MiB |", file=sys.stderr
    )
    print("|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(
            f"| {r['shape']} | {r['params'] / 1e6:.1f}M | {r['what']} | {r['precision']} "
            f"| {r.get('step_s', '-')} | {r['tokens_per_s']} | {r['peak_rss_mib']} |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
