"""How long finding an author's works takes on a catalog the size of Project Gutenberg's.

Builds a synthetic pg_catalog.csv.gz with --rows rows (the real one had about 76,000 in 2026)
in the real format: several people per row, roles in brackets, dates, multi-language cells,
sound and image rows. Then times, as medians of --repeat runs:
- read_catalog: decompress and parse the file;
- select_works: find one author among them and choose their works;
- the whole command, `authorgen fetch NAME --dry-run --catalog FILE`, in a fresh process.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from authorgen.sources.catalog import HEADER, read_catalog, select_works

SURNAMES = [
    "Smith",
    "Dupont",
    "Kowalski",
    "Müller",
    "García",
    "Rossi",
    "Brontë",
    "Żeromski",
    "Andersen",
    "O'Brien",
]
GIVEN = ["Anna", "Jean", "Jan", "Maria", "John", "Luigi", "Charlotte", "Stefan", "Hans", "Pat"]
LANGS = ["en"] * 8 + ["fr", "de", "fi", "nl", "pl", "es", "it", "pt", "en; fr"]


def build_catalog(rows: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    people = [
        f"{rng.choice(SURNAMES)}{i}, {rng.choice(GIVEN)}, {1700 + i % 250}-{1760 + i % 250}"
        for i in range(rows // 3)
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for n in range(1, rows + 1):
        names = [rng.choice(people)]
        if rng.random() < 0.15:
            names.append(rng.choice(people) + " [Translator]")
        if rng.random() < 0.05:
            names.append(rng.choice(people) + " [Editor]")
        if n <= 60:  # one prolific author, as Dickens or Twain are
            names = ["Dickens, Charles, 1812-1870"]
        kind = "Text" if rng.random() < 0.97 else rng.choice(["Sound", "Image", "Dataset"])
        title = f"Volume {n} of Things; Or, A Subtitle" + ("\nPart Two" if n % 50 == 0 else "")
        writer.writerow(
            [n, kind, "2005-01-01", title, rng.choice(LANGS), "; ".join(names), "Fiction", "PR", ""]
        )
    return gzip.compress(out.getvalue().encode("utf-8"), mtime=0)


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=76_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    data = build_catalog(args.rows)
    books = read_catalog(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pg_catalog.csv.gz"
        path.write_bytes(data)
        command = [sys.executable, "-m", "authorgen", "fetch", "Charles Dickens", "--dry-run"]
        command += ["--json", "--catalog", str(path), "--corpora-dir", tmp, "-q"]
        cli_s = median_time(
            lambda: subprocess.run(command, check=True, capture_output=True), args.repeat
        )
    result = {
        "rows": len(books),
        "gzip_bytes": len(data),
        "read_catalog_s": round(median_time(lambda: read_catalog(data), args.repeat), 3),
        "select_works_s": round(
            median_time(lambda: select_works(books, "Charles Dickens"), args.repeat), 3
        ),
        "works_chosen": len(select_works(books, "Charles Dickens").books),
        "cli_dry_run_s": round(cli_s, 3),
        "repeat": args.repeat,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
