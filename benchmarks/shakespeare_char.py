"""Tiny Shakespeare benchmark: val nats/char after a wall-clock budget (characters by default).

Uses nanoGPT's split (first 90% of characters train, last 10% val) so the number compares with
published ones: nanoGPT's CPU recipe reaches 1.88 nats/char, a plain 2x256 LSTM about 1.61 in
300 s on a 2-core CPU. The loss is over the whole val split, every character predicted once.

    python benchmarks/shakespeare_char.py     # as `authorgen train --time 5m`: sizes auto-chosen
    python benchmarks/shakespeare_char.py --time 60 --model gru --hidden 384
    python benchmarks/shakespeare_char.py --tokenizer bpe --vocab-size 2000 --time 120s

Prints a human summary on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from authorgen.clean import decode, normalize
from authorgen.cli.console import TrainProgress, make_console
from authorgen.config import (
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    TrainOptions,
    parse_duration,
)
from authorgen.corpus import split_text
from authorgen.devices import cpu_has_bf16, resolve_device
from authorgen.train import choose_sizes, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


OPTIONS = (
    "model", "embedding_dim", "hidden", "layers", "heads", "mlp_dim", "dropout", "context",
    "batch_size", "batching", "lr", "weight_decay", "warmup_steps", "grad_clip", "min_lr_ratio",
)  # fmt: skip


def cpu_peak_flops(dtype=None, n: int = 2048, repeats: int = 5) -> float:
    """The best FLOP/s of an n x n matmul on this machine (the practical peak), fp32 unless told."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def training_flops_per_token(model: dict, params: int, vocab: int) -> float:
    """About 6 FLOPs per weight per token (forward 2, backward 4), the embedding lookup aside;
    a transformer adds its attention over the context (PaLM's appendix B, nanoGPT's MFU)."""
    lookup = vocab * model["embedding_dim"]
    tied_head = lookup if model.get("tie_weights") else 0
    flops = 6 * (params - lookup + tied_head)
    if model["model"] == "transformer":
        flops += 12 * model["layers"] * model["embedding_dim"] * model["context"]
    return flops


def plain_lstm(device) -> dict:
    """The baseline's options: the plainest LSTM that uses this machine (issue 19)."""
    big = device.type != "cpu" or cpu_has_bf16()
    return dict(
        model="lstm", layers=2, hidden=512 if big else 256, embedding_dim=128 if big else 64,
        dropout=0.0, batch_size=32, context=128, batching="windows", lr=2e-3, warmup_steps=0,
        min_lr_ratio=1.0, weight_decay=0.0, precision="bf16" if big else "fp32",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=SHARED / "corpora" / "tinyshakespeare.txt")
    parser.add_argument("--time", default="300s", help="wall-clock budget (default 300s)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the run here")
    parser.add_argument("--tokenizer", default="char", help="char, word, bpe or unigram")
    parser.add_argument("--vocab-size", type=int, default=None)
    parser.add_argument("--preset", default=None, help="start from a preset (authorgen.plan)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="the plain LSTM to beat: 2x512 in bf16 where the CPU has it (else 2x256 fp32), "
        "32 random windows of 128, AdamW at a constant 2e-3, nothing else",
    )
    # Sizes are chosen as `authorgen train` chooses them unless given, e.g. --hidden 384.
    types = {**ModelConfig().to_dict(), **{f.name: f.default for f in fields(TrainConfig)}}
    for key in OPTIONS:
        kind = type(types[key]) if types[key] is not None else int
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None, type=kind)
    args = vars(parser.parse_args())

    if not args["text"].is_file():
        sys.exit(
            f"{args['text']} not found: this benchmark needs ../shared/corpora beside the repo"
        )
    text = normalize(decode(args["text"].read_bytes())[0])
    split = split_text(text)
    tokenizer = TokenizerConfig(args["tokenizer"], vocab_size=args["vocab_size"])
    device = resolve_device(args["device"])
    if args["baseline"]:
        args.update(plain_lstm(device))
    options = TrainOptions(
        **{k: args[k] for k in OPTIONS if args[k] is not None},
        steps=args["steps"],
        time_s=parse_duration(args["time"]),
        device=device.type,
        precision=args["precision"],
        seed=args["seed"],
        eval_every=args["eval_every"],
        compile=args["compile"] or None,
    )
    console = make_console()
    chosen = choose_sizes(split.train_chars, tokenizer, device, options, args["preset"])
    for line in chosen.reasons:
        console.print(f"  plan: {line}")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args["out"] or Path(tmp) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with TrainProgress(console) as progress:
            result = train(
                split,
                chosen.model,
                chosen.train,
                run_dir,
                run_info={"corpus": str(args["text"].name)},
                callback=progress,
                tokenizer_config=tokenizer,
            )
            config = json.loads((run_dir / "config.json").read_text())
    flops = training_flops_per_token(config["model"], result.params, config["model"]["vocab_size"])
    peak = cpu_peak_flops() if device.type == "cpu" else None
    row = {
        "benchmark": f"tinyshakespeare-{tokenizer.kind}",
        "device": config["device"],
        "precision": config["precision"],
        "threads": config["threads"],
        "plan": chosen.reasons,
        "probe": chosen.speeds,
        "tokenizer": tokenizer.to_dict(),
        "tokens_per_char": config["tokenizer"]["tokens_per_char"],
        "val_loss_nats_per_char": round(result.best_val_loss, 4),
        "val_bpc": round(result.best_val_bpc, 4),
        # the run's predictions mixed with the training text's n-gram counts (authorgen.ngrams),
        # measured two-fold on the same validation text; None with --no-ngrams
        "mixed_val_loss_nats_per_char": (
            round(result.mixed_val_loss, 4) if result.mixed_val_loss is not None else None
        ),
        "best_step": result.best_step,
        "steps": result.steps,
        "tokens": result.tokens,
        "tokens_per_s": round(result.tokens_per_s),
        "params": result.params,
        "training_flops_per_token": flops,
        "achieved_gflops": round(result.tokens_per_s * flops / 1e9, 2),
        "cpu_fp32_peak_gflops": round(peak / 1e9, 1) if peak else None,
        "fraction_of_cpu_fp32_peak": round(result.tokens_per_s * flops / peak, 4) if peak else None,
        "elapsed_s": round(result.elapsed_s, 1),
        "model": config["model"],
        "train": config["train"],
    }
    console.print(
        f"Tiny Shakespeare ({tokenizer.kind}), whole val split: "
        f"{row['val_loss_nats_per_char']} nats/char "
        f"({row['val_bpc']} bpc)"
        + (
            f", {row['mixed_val_loss_nats_per_char']} mixed with the n-gram counts"
            if row["mixed_val_loss_nats_per_char"] is not None
            else ""
        )
        + f"; {row['tokens_per_s']:,} tokens/s; {row['params']:,} params; "
        f"{row['steps']:,} steps in {row['elapsed_s']} s"
        + (
            f"; {row['achieved_gflops']} GFLOP/s = {row['fraction_of_cpu_fp32_peak']:.1%} of the "
            f"CPU's fp32 matmul peak ({row['cpu_fp32_peak_gflops']} GFLOP/s)"
            if peak
            else ""
        )
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
