"""A trained run mixed with its training text's n-gram counts (issue 19; `authorgen.ngrams`).

For a run kept by `shakespeare_char.py --out` (char tokenizer, nanoGPT's split): the run's
validation loss alone, the n-gram model's alone, and the two mixed as `authorgen.ngrams` mixes
them (weights fitted on one half of the validation text and scored on the other, both ways),
for several orders; then `--samples` texts per temperature from the model alone and from the
mix (the same seeds), judged by the run's originality index: does the mix copy more?

    python benchmarks/shakespeare_char.py --out /tmp/run      # keep a trained run
    python benchmarks/ngram_mix.py /tmp/run --order 4 6 7 8

Prints a human summary on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from authorgen.checkpoint import load_run
from authorgen.clean import decode, normalize
from authorgen.config import SampleConfig
from authorgen.corpus import VAL_FRACTION
from authorgen.losses import token_probabilities
from authorgen.ngrams import NGrams
from authorgen.sample import Generation

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def originality(run, counts, temperatures, samples: int, length: int) -> dict:
    """Mean longest verbatim copy, novel 8-gram share and invented-word share of `samples`
    texts per temperature, from the model alone and from the mix (seeds 0 ..)."""
    index = run.originality_index()
    rows = {}
    for temperature in temperatures:
        config = SampleConfig(temperature=temperature, length=length, known_words=False)
        for name, mixed in (("model", None), ("mix", counts)):
            generation = Generation(
                run.model, run.tokenizer, "", config, range(samples), "cpu", index, mixed
            )
            reports = [s.originality for _, _, s in generation if s]
            words = sum(r["words"] for r in reports)
            rows[f"{name} T={temperature}"] = row = {
                "longest_copy_chars": statistics.mean(r["longest_copy_chars"] for r in reports),
                "novel_8gram_share": round(
                    statistics.mean(r["novel_8gram_share"] for r in reports), 4
                ),
                "invented_words": round(sum(r["invented"] for r in reports) / words, 4),
            }
            log(f"{name} T={temperature}: {row}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run kept by shakespeare_char.py --out")
    parser.add_argument("--text", type=Path, default=SHARED / "corpora" / "tinyshakespeare.txt")
    parser.add_argument("--order", type=int, nargs="+", default=[4, 5, 6, 7, 8])
    parser.add_argument("--samples", type=int, default=10, help="texts per temperature")
    parser.add_argument("--length", type=int, default=1000, help="characters per text")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 1.0])
    parser.add_argument("--sample-order", type=int, default=7, help="the order sampled from")
    args = parser.parse_args()
    text = normalize(decode(args.text.read_bytes())[0])
    cut = int(len(text) * (1 - VAL_FRACTION))
    run = load_run(args.run)
    if run.tokenizer.kind != "char":
        raise SystemExit("this benchmark's split is by characters: it needs a char run")
    train_ids = np.asarray(run.tokenizer.encode(text[:cut]), dtype=np.int64)
    val_ids = np.asarray(run.tokenizer.encode(text[cut:]), dtype=np.int64)
    chars = len(text) - cut - 1  # characters predicted, as training counts them
    t0 = time.perf_counter()
    model_p = token_probabilities(run.model, val_ids, torch.device("cpu"))
    log(f"model: {-np.log(model_p).sum() / chars:.4f} nats/char ({time.perf_counter() - t0:.1f}s)")
    result = {"run": str(args.run), "orders": {}}
    for order in sorted(set(args.order) | {args.sample_order}):
        t0 = time.perf_counter()
        counts = NGrams.count(train_ids, run.tokenizer.vocab_size, order)
        counted = time.perf_counter() - t0
        info = counts.fit(model_p, val_ids, chars)
        row = {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()}
        row["count_s"] = round(counted, 2)
        row["grams"] = sum(len(level.grams) for level in counts.levels)
        result["orders"][order] = row
        log(f"order {order}: {row}")
        if order == args.sample_order and args.samples:
            result["samples"] = originality(
                run, counts, args.temperatures, args.samples, args.length
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
