"""Tiny Shakespeare benchmark: val nats/char after a wall-clock budget (characters by default).

Uses nanoGPT's split (first 90% of characters train, last 10% val) so the number compares with
published ones: nanoGPT's CPU recipe reaches 1.88 nats/char, a plain 2x256 LSTM about 1.61 in
300 s on a 2-core CPU. The loss is over the whole val split, every character predicted once.

    python benchmarks/shakespeare_char.py                 # the defaults of `authorgen train`
    python benchmarks/shakespeare_char.py --time 60 --model gru --hidden 384
    python benchmarks/shakespeare_char.py --tokenizer bpe --vocab-size 2000 --time 120s

Prints a human summary on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from authorgen.clean import decode, normalize
from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig, parse_duration
from authorgen.console import TrainProgress, make_console
from authorgen.corpus import split_text
from authorgen.train import train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=SHARED / "corpora" / "tinyshakespeare.txt")
    parser.add_argument("--time", default="300s", help="wall-clock budget (default 300s)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the run here")
    parser.add_argument("--tokenizer", default="char", help="char, word, bpe or unigram")
    parser.add_argument("--vocab-size", type=int, default=None)
    # Any ModelConfig / TrainConfig field can be overridden, e.g. --hidden 384 --lr 2e-3.
    defaults = {**ModelConfig().to_dict(), **{f.name: f.default for f in fields(TrainConfig)}}
    for key in (
        "model",
        "embedding_dim",
        "hidden",
        "layers",
        "dropout",
        "context",
        "batch_size",
        "batching",
        "lr",
        "eval_every",
        "seed",
        "device",
        "grad_clip",
        "weight_decay",
        "warmup_steps",
        "min_lr_ratio",
    ):
        value = defaults[key]
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=value, type=type(value))
    args = vars(parser.parse_args())

    if not args["text"].is_file():
        sys.exit(
            f"{args['text']} not found: this benchmark needs ../shared/corpora beside the repo"
        )
    text = normalize(decode(args["text"].read_bytes())[0])
    split = split_text(text)
    model_config = ModelConfig(
        **{k: args[k] for k in ("model", "embedding_dim", "hidden", "layers", "dropout")}
    )
    train_keys = {f.name for f in fields(TrainConfig)} - {
        "steps",
        "time_s",
        "pretrained_embeddings",
    }
    train_config = TrainConfig(
        **{k: args[k] for k in train_keys}, steps=args["steps"], time_s=parse_duration(args["time"])
    )
    tokenizer = TokenizerConfig(args["tokenizer"], vocab_size=args["vocab_size"])
    console = make_console()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args["out"] or Path(tmp) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with TrainProgress(console) as progress:
            result = train(
                split,
                model_config,
                train_config,
                run_dir,
                {"corpus": str(args["text"].name)},
                progress,
                tokenizer,
            )
            tokens_per_char = json.loads((run_dir / "config.json").read_text())["tokenizer"][
                "tokens_per_char"
            ]
    row = {
        "benchmark": f"tinyshakespeare-{tokenizer.kind}",
        "tokenizer": tokenizer.to_dict(),
        "tokens_per_char": tokens_per_char,
        "val_loss_nats_per_char": round(result.best_val_loss, 4),
        "val_bpc": round(result.best_val_bpc, 4),
        "best_step": result.best_step,
        "steps": result.steps,
        "tokens_per_s": round(result.tokens_per_s),
        "params": result.params,
        "elapsed_s": round(result.elapsed_s, 1),
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
    }
    console.print(
        f"Tiny Shakespeare ({tokenizer.kind}), whole val split: "
        f"{row['val_loss_nats_per_char']} nats/char "
        f"({row['val_bpc']} bpc); {row['tokens_per_s']:,} tokens/s; {row['params']:,} params; "
        f"{row['steps']:,} steps in {row['elapsed_s']} s"
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
