"""The sweeps behind the CPU plan (issue 19): each candidate of `authorgen.plan` trained on Tiny
Shakespeare for 1, 5 and 20 minutes, each in a fresh process, one after the other.

    python benchmarks/sweep.py --out sweep.jsonl                      # every candidate, 1/5/20 min
    python benchmarks/sweep.py --out sweep.jsonl --budgets 60 300 --runs lstm:bf16 baseline
    python benchmarks/sweep.py --out sweep.jsonl --fit      # the plan's curves, from the rows

A run is `PRESET:PRECISION` or `baseline` (the plain LSTM of `shakespeare_char.py --baseline`).
Each result is appended to `--out` as one JSON line as soon as it is known, so a sweep cut short
keeps what it measured. The plan's rule is fitted to the tokens each run actually read, not to
its minutes, so a run slowed by a busy machine still gives a true point of its curve.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(name: str, budget_s: int) -> dict:
    command = [sys.executable, str(HERE / "shakespeare_char.py"), "--time", f"{budget_s}s"]
    if name == "baseline":
        command.append("--baseline")
    else:
        preset, _, precision = name.partition(":")
        command += ["--preset", preset, "--precision", precision or "fp32"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"run": name, "budget_s": budget_s, **row}


def fit(rows: list[dict]) -> dict:
    """The plan's curves: each preset's best validation loss after D million tokens read as
    E + A D^-alpha, by least squares for E and A at each alpha of a grid, keeping the alpha
    with the least squared error, over its runs in either precision (a token teaches as much
    in bf16 as in fp32; benchmarks/README.md)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["run"] != "baseline":
            preset = row["run"].partition(":")[0]
            points.setdefault(preset, []).append(
                (row["tokens"] / 1e6, row["val_loss_nats_per_char"])
            )
    curves, errors = {}, []
    for preset, xy in points.items():
        best = None
        for alpha in [a / 100 for a in range(5, 201)]:
            xs, ys = [d**-alpha for d, _ in xy], [y for _, y in xy]
            n = len(xy)
            mx, my = sum(xs) / n, sum(ys) / n
            spread = sum((x - mx) ** 2 for x in xs)
            pairs = list(zip(xs, ys, strict=True))
            a = sum((x - mx) * (y - my) for x, y in pairs) / spread if spread else 0.0
            e = my - a * mx
            error = [e + a * x - y for x, y in pairs]
            if best is None or sum(r * r for r in error) < sum(r * r for r in best[3]):
                best = (round(e, 4), round(a, 4), alpha, error)
        curves[preset] = best[:3]
        errors += best[3]
    rms = math.sqrt(sum(r * r for r in errors) / len(errors))
    return {"curves": curves, "rms_error": round(rms, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended to")
    parser.add_argument(
        "--fit", action="store_true", help="run nothing: fit the curves to --out's rows"
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[60, 300, 1200])
    parser.add_argument(
        "--runs", nargs="+",
        default=["lstm:fp32", "lstm:bf16", "lstm-medium:bf16", "lstm-large:bf16", "baseline"],
    )  # fmt: skip
    args = parser.parse_args()
    if args.fit:
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
        print(json.dumps(fit(rows), indent=1))
        return
    for budget in args.budgets:
        for name in args.runs:
            row = run(name, budget)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
            print(
                f"{name:>18} {budget:>5} s: {row['val_loss_nats_per_char']:.4f} nats/char, "
                f"{row['tokens']:,} tokens, {row['tokens_per_s']:,} tokens/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
