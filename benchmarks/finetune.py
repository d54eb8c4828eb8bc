"""Fine-tuning from a base (issue 29), on the books of ../shared/corpora.

A base is trained on a library of the books of every author but the held-out ones (default:
Austen, Carroll and Poe are held out; Shakespeare, Dickens, Twain, Doyle and Flaubert make the
library) for --base-minutes with the sizes `authorgen train` picks. Then, for each held-out
author, with the same --minutes budget, split and seed (`authorgen compare ... --from base`):

- from scratch: the plan's LSTM for the budget;
- from the base: `train AUTHOR --from base`;
- the base as it is: `--steps 0`.

Each is judged as `compare` judges: held-out nats/char (and with the n-gram counts mixed in),
realism, longest copy, invented words (--any-words), distinct-2; and one sample with
generate's defaults is printed.

--sweep AUTHOR also fine-tunes AUTHOR at several learning rates (--lr-scales, times the
base's peak) and with the embedding and lowest layer frozen: how the plan's fine-tuning
settings were chosen.

    python benchmarks/finetune.py --home /tmp/b29 --base-minutes 20 --minutes 2
    python benchmarks/finetune.py --home /tmp/b29 --sweep poe --only sweep
    python benchmarks/finetune.py --home /tmp/b29 --tables rows.jsonl

One JSON line per run goes to stdout, tables to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from known_words import AUTHORS, SHARED, keep_authors, log

HELD_OUT = ("austen", "carroll", "poe")


def authorgen(home: Path, *args: str) -> None:
    env = {"AUTHORGEN_HOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "authorgen", *args], check=True, env=env)


def corpora(home: Path, held_out: list[str]) -> None:
    """The library (every author not held out) and a corpus per held-out author."""
    for name, books in [("library", [b for a in AUTHORS if a not in held_out for b in AUTHORS[a]])]:
        if not (home / "corpora" / name).exists():
            authorgen(home, "fetch", *[str(SHARED / b) for b in books], "--name", name, "-q")
    for author in held_out:
        if not (home / "corpora" / author).exists():
            books = [str(SHARED / b) for b in AUTHORS[author]]
            authorgen(home, "fetch", *books, "--name", author, "-q")


def sample_text(home: Path, run: str, length: int = 400) -> str:
    """One sample with generate's defaults (seed 1)."""
    from authorgen.checkpoint import load_run
    from authorgen.config import SampleConfig
    from authorgen.sample import generate

    loaded = load_run(home / "checkpoints" / run)
    index, ngrams = loaded.originality_index(), loaded.ngrams()
    pieces = generate(
        loaded.model, loaded.tokenizer, "", SampleConfig(length=length), 1, "cpu", index, ngrams
    )
    return "".join(pieces)


def compare_author(home: Path, author: str, minutes: float, samples: int) -> list[dict]:
    from authorgen.compare import budget, compare_models

    options = budget(None, minutes * 60, None, "cpu")
    rows, _ = compare_models(
        home / "corpora", home / "checkpoints", author, ["lstm"], ["char"], options,
        bases=("base",), samples=samples, force=True,
    )  # fmt: skip
    for row in rows:
        row["author"] = author
        row["sample"] = sample_text(home, row["run"])
    return rows


def sweep(home: Path, author: str, minutes: float, scales: list[float]) -> list[dict]:
    """Fine-tunes of `author` at peak learning rates `scales` x the base's, and one with the
    embedding and the lowest recurrent layer frozen (at the plan's rate)."""
    from authorgen import base as base_module
    from authorgen.config import TrainConfig, TrainOptions
    from authorgen.corpus import Corpus, split_corpus
    from authorgen.train import build_trainer, run_trainer

    rows = []
    base = base_module.Base.open("base", home / "checkpoints")
    split = split_corpus(Corpus.open(home / "corpora", author))
    tokenizer = base.tokenizer_for(split)
    trials = [(s, False) for s in scales] + [(base_module.LR_SCALE, True)]
    peak = TrainConfig.from_dict(base.config["train"]).lr  # the base's
    for scale, frozen in trials:
        chosen = base.plan(TrainOptions(time_s=minutes * 60, device="cpu"), "cpu")
        train = replace(chosen.train, lr=peak * scale)
        run_dir = (
            home / "checkpoints" / (f"{author}-sweep-{scale:g}" + ("-frozen" if frozen else ""))
        )
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        trainer = build_trainer(
            split, chosen.model, train, run_dir, tokenizer=tokenizer, base=base,
            run_info={"corpus": author},
        )  # fmt: skip
        if frozen:
            for name, param in trainer.model.named_parameters():
                if name.startswith("embedding") or name.endswith("_l0"):
                    param.requires_grad_(False)
        t0 = time.monotonic()
        result = run_trainer(trainer)
        rows.append(
            {
                "author": author,
                "lr_scale": scale,
                "frozen": frozen,
                "lr": train.lr,
                "val_loss": round(result.best_val_loss, 4),
                "mixed_val_loss": round(result.mixed_val_loss, 4)
                if result.mixed_val_loss
                else None,
                "steps": result.steps,
                "tokens_per_s": round(result.tokens_per_s),
                "wall_s": round(time.monotonic() - t0, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> None:
    log("| author | run | val nats/char | mixed | realism | longest copy | invented | distinct-2 |")
    log("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ln2 = 0.6931471805599453
        mixed = r.get("mixed_val_bpc")
        realism = (r.get("realism") or {}).get("auc")
        log(
            f"| {r['author']} | {r['model']} | {r['val_bpc'] * ln2:.3f} | "
            + (f"{mixed * ln2:.3f}" if mixed is not None else "-")
            + f" | {realism:.2f} | {r['originality']['longest_copy_chars']} | "
            f"{r['invented_words']:.1%} | {r['distinct_2']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--held-out", default=",".join(HELD_OUT))
    parser.add_argument("--base-minutes", type=float, default=20)
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--sweep", default=None, help="an author to sweep the fine-tune on")
    parser.add_argument("--lr-scales", default="1,0.3,0.1")
    parser.add_argument("--only", choices=("base", "sweep", "compare"), default=None)
    parser.add_argument("--tables", type=Path, help="print the tables of these rows (JSON lines)")
    args = parser.parse_args()
    if args.tables:
        rows = [json.loads(line) for line in args.tables.read_text().splitlines() if line.strip()]
        table(rows)
        for r in rows:
            log(f"\n{r['author']}, {r['model']}:\n{r['sample'][:400]}")
        return
    keep_authors(",".join(AUTHORS))
    held_out = args.held_out.split(",")
    corpora(args.home, held_out)
    if args.only in (None, "base") and not (args.home / "checkpoints" / "base").exists():
        authorgen(
            args.home, "train", "library", "--time", f"{args.base_minutes}m", "--name", "base"
        )
    if args.sweep and args.only in (None, "sweep"):
        scales = [float(s) for s in args.lr_scales.split(",")]
        for row in sweep(args.home, args.sweep, args.minutes, scales):
            log(json.dumps(row))
    if args.only in (None, "compare"):
        rows = []
        for author in held_out:
            rows += compare_author(args.home, author, args.minutes, args.samples)
            for row in rows[-3:]:
                print(json.dumps(row), flush=True)
        table(rows)
        for r in rows:
            log(f"\n{r['author']}, {r['model']}:\n{r['sample'][:400]}")


if __name__ == "__main__":
    main()
