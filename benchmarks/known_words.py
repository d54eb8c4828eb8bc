"""Invented words, with and without --known-words, on the eight authors of ../shared/corpora.

For each author (Shakespeare, Austen, Dickens, Twain, Carroll, Doyle, Poe, Flaubert) a corpus
of their shared books is made and a run trained for --minutes with the sizes `authorgen train`
picks (runs already there are kept: --train again replaces them). Then, per run and
temperature, --samples samples of --length characters (seeds 0...) are written with the rule
off (--any-words) and on (--known-words), the same seeds both ways, and judged as `eval` judges:

- invented words: the share of the samples' words that the training text does not have (a word
  cut off by the end of a sample is not judged), beside the held-out text's share, the ceiling;
- Delta: Burrows' Delta of the samples (joined) to the author's held-out text, and its rank
  among the eight authors (1: closest to their own author);
- longest copy from the corpus (the longest of the samples, and the mean) and distinct-2/3.

--rules any --first-seed 100 writes other samples without the rule: how much the numbers move
between two sets of samples alike (the noise the difference with the rule is judged against).

--overhead times one sample of --overhead-chars characters with the rule off and on, in
turns, for each run, and for a subword (bpe) run of Tiny Shakespeare: the rule's whole cost in
a fresh process, building it included (its word-beginnings, its token trie, and each state's
tokens as it first meets them), with the garbage collector set as the command sets it.

    python benchmarks/known_words.py --home /tmp/kw --minutes 5
    python benchmarks/known_words.py --home /tmp/kw --only overhead
    python benchmarks/known_words.py --home /tmp/kw --tokenizer bpe --authors austen,flaubert

Writes one JSON line per (run, temperature, rule) to stdout, tables to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
AUTHORS = {
    "shakespeare": ["tinyshakespeare.txt"],
    "austen": ["pg1342-pride-and-prejudice.txt"],
    "dickens": ["pg98-a-tale-of-two-cities.txt", "pg1400-great-expectations.txt"],
    "twain": ["pg76-adventures-of-huckleberry-finn.txt"],
    "carroll": ["pg11-alices-adventures-in-wonderland.txt"],
    "doyle": ["pg1661-the-adventures-of-sherlock-holmes.txt"],
    "poe": ["pg51060-the-narrative-of-arthur-gordon-pym.txt"],
    "flaubert": ["pg14155-madame-bovary.txt"],
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def read_rows(paths: list[Path]) -> list[dict]:
    """The measured rows of JSON-lines files."""
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def keep_authors(names: str) -> None:
    """Only the authors named (comma-separated) are measured; exits if ../shared is missing."""
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared/corpora beside the repo")
    for name in set(AUTHORS) - set(names.split(",")):
        del AUTHORS[name]


def authorgen(home: Path, *args: str) -> None:
    env = {**os.environ, "AUTHORGEN_HOME": str(home), "NO_COLOR": "1"}
    subprocess.run([sys.executable, "-m", "authorgen", *args], env=env, check=True)


def train(home: Path, minutes: float, threads: int | None, again: bool, kind: str) -> None:
    for author, books in AUTHORS.items():
        if not (home / "corpora" / author).exists():
            authorgen(home, "fetch", *[str(SHARED / b) for b in books], "--name", author, "-q")
        run = f"{author}-{kind}"
        if (home / "checkpoints" / run / "config.json").exists() and not again:
            continue
        log(f"training {run} for {minutes:g} minutes")
        extra = ["--threads", str(threads)] if threads else []
        authorgen(home, "train", author, "--time", f"{minutes * 60:g}s", "--tokenizer", kind,
                  "--name", run, "--force", "-q", *extra)  # fmt: skip


def measure(
    home: Path, kind: str, temperatures, samples: int, length: int, rules=(False, True), first=0
) -> list[dict]:
    from authorgen.checkpoint import load_run
    from authorgen.config import SampleConfig
    from authorgen.corpus import Corpus, split_corpus
    from authorgen.evaluate import heldout_invented, sample_report, style_candidates

    rows = []
    for author in AUTHORS:
        run = load_run(home / "checkpoints" / f"{author}-{kind}", "cpu")
        candidates, _ = style_candidates(run.config, home / "corpora")
        split = split_corpus(Corpus.open(home / "corpora", author), run.config["data"]["holdout"])
        ceiling = heldout_invented(run, split)["invented_words"]
        for t in temperatures:
            for rule in rules:
                config = SampleConfig(temperature=t, length=length, n=samples, known_words=rule)
                start = time.perf_counter()
                seeds = list(range(first, first + samples))
                report = sample_report(run, config, seeds, "cpu", candidates, author)
                style, orig = report["style"], report["originality"]
                row = {
                    "author": author,
                    "run": run.path.name,
                    "temperature": t,
                    "known_words": rule,
                    "seed": first,
                    "invented_words": report["invented_words"],
                    "heldout_invented_words": ceiling,
                    "delta": style["delta"][author],
                    "rank": style["rank"],
                    "own_delta": style["own_delta"],
                    "longest_copy": orig["longest_copy_chars"],
                    "mean_longest_copy": orig["mean_longest_copy_chars"],
                    "distinct_2": report["distinct"]["distinct_2"],
                    "distinct_3": report["distinct"]["distinct_3"],
                    "seconds": round(time.perf_counter() - start, 1),
                    "example": report["texts"][0][:300],
                }
                print(json.dumps(row, ensure_ascii=False), flush=True)
                rows.append(row)
        log(f"{author}: done ({len(rows)} rows)")
    return rows


def _label(row: dict) -> str:
    seed = row.get("seed") or 0
    return ("known" if row["known_words"] else "any") + (f" @{seed}" if seed else "")


def tables(rows: list[dict]) -> None:
    """Per temperature and rule, the means over authors; the paired differences in Delta (with
    the rule against without, and two sample sets without it); every author at 0.8."""
    labels = sorted({_label(r) for r in rows})
    log("| T | samples | invented words | held-out ceiling | Delta | rank 1 | mean rank "
        "| longest copy (max / mean) | distinct-2 |")  # fmt: skip
    log("|---|---|---|---|---|---|---|---|---|")
    for t in sorted({r["temperature"] for r in rows}):
        for label in labels:
            sel = [r for r in rows if r["temperature"] == t and _label(r) == label]
            if not sel:
                continue
            mean = lambda key, sel=sel: statistics.fmean(r[key] for r in sel)  # noqa: E731
            log(
                f"| {t:g} | {label} | {mean('invented_words'):.1%} "
                f"| {mean('heldout_invented_words'):.1%} | {mean('delta'):.3f} "
                f"| {sum(r['rank'] == 1 for r in sel)}/{len(sel)} | {mean('rank'):.2f} "
                f"| {max(r['longest_copy'] for r in sel)} / {mean('mean_longest_copy'):.1f} "
                f"| {mean('distinct_2'):.3f} |"
            )
    by = {(r["author"], r["temperature"], _label(r)): r for r in rows}
    for other in labels[1:]:
        pairs = [
            (by[(a, t, other)], r) for (a, t, label), r in by.items()
            if label == labels[0] and (a, t, other) in by
        ]  # fmt: skip
        if len(pairs) < 2:
            continue
        for key in ("delta", "mean_longest_copy", "distinct_2"):
            diffs = [x[key] - y[key] for x, y in pairs]
            sd = statistics.stdev(diffs)
            log(
                f"{other} - {labels[0]}, {key}: mean {statistics.fmean(diffs):+.4f} "
                f"(standard error {sd / len(diffs) ** 0.5:.4f}; mean |difference| "
                f"{statistics.fmean(abs(d) for d in diffs):.4f}; {len(diffs)} pairs)"
            )
    log("")
    log("| author | samples | invented | ceiling | Delta | rank | longest copy | distinct-2 |")
    log("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["temperature"] == 0.8:
            log(
                f"| {r['author']} | {_label(r)} | {r['invented_words']:.1%} "
                f"| {r['heldout_invented_words']:.1%} | {r['delta']:.3f} | {r['rank']} "
                f"| {r['longest_copy']} | {r['distinct_2']:.3f} |"
            )


def overhead(home: Path, kind: str, chars: int, rounds: int, threads: int | None) -> list[dict]:
    """Seconds for one sample of `chars` characters, the rule off and on in turns; the rule's
    state cache starts cold for each (a fresh index object)."""
    import torch

    from authorgen.checkpoint import load_run
    from authorgen.config import SampleConfig
    from authorgen.originality import Index
    from authorgen.run_folder import existing_mapped_dir
    from authorgen.sample import Generation

    if threads:
        torch.set_num_threads(threads)
    gc.set_threshold(50_000, 10, 10)  # as the command sets it (authorgen.cli.main)
    runs = [home / "checkpoints" / f"{a}-{kind}" for a in AUTHORS]
    bpe = home / "checkpoints" / "shakespeare-bpe"
    if not (bpe / "config.json").exists():
        authorgen(home, "train", "shakespeare", "--time", "60s", "--tokenizer", "bpe",
                  "--name", "shakespeare-bpe", "--force", "-q")  # fmt: skip
    out = []
    for path in [*runs, bpe]:
        run = load_run(path, "cpu")
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(rounds):
            for rule in (False, True):
                # a fresh one: the rule's cache starts empty
                index = Index(existing_mapped_dir(path, run.config.get("maps"), "index"))
                config = SampleConfig(temperature=0.8, length=chars, known_words=rule)
                start = time.perf_counter()
                for _ in Generation(run.model, run.tokenizer, "", config, [i], "cpu", index):
                    pass
                times[rule].append(time.perf_counter() - start)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        row = {
            "run": path.name,
            "chars": chars,
            "off_s": round(off, 3),
            "on_s": round(on, 3),
            "overhead": round(on / off - 1, 4),
        }
        log(f"{path.name}: {off:.2f} s off, {on:.2f} s on: {on / off - 1:+.1%}")
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="Corpora and runs go here.")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--tokenizer", default="char")
    parser.add_argument("--authors", default=",".join(AUTHORS), help="Some of the eight.")
    parser.add_argument("--temperatures", default="0.6,0.7,0.8,0.9,1.0")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--rules", default="any,known", help="any, known or both.")
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--train", action="store_true", help="Train the runs again.")
    parser.add_argument("--only", choices=("measure", "overhead"), default=None)
    parser.add_argument(
        "--tables", nargs="+", type=Path, help="Print the tables of measured rows (JSON lines)."
    )
    parser.add_argument("--overhead-chars", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.tables:
        tables(read_rows(args.tables))
        return
    keep_authors(args.authors)
    train(args.home, args.minutes, args.threads, args.train, args.tokenizer)
    if args.only in (None, "measure"):
        temperatures = [float(t) for t in args.temperatures.split(",")]
        rules = [{"any": False, "known": True}[r] for r in args.rules.split(",")]
        rows = measure(
            args.home, args.tokenizer, temperatures, args.samples, args.length, rules,
            args.first_seed,
        )  # fmt: skip
        tables(rows)
    if args.only in (None, "overhead"):
        overhead(args.home, args.tokenizer, args.overhead_chars, args.rounds, args.threads)


if __name__ == "__main__":
    main()
