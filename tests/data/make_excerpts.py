"""Cut the books of ../shared/corpora into the excerpts under tests/data (run from the repo).

Each Gutenberg file keeps its header and footer byte for byte (BOM, line endings, licence) and
the first HEAD and last TAIL bytes of its body, each cut at a blank line; the rest of the body
goes. Alice is kept whole (the tests train on it); Tiny Shakespeare keeps its first SHAKESPEARE
bytes, cut at a blank line.
"""

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from authorgen.clean import clean_text

SHARED = Path(__file__).resolve().parents[3] / "shared" / "corpora"
OUT = Path(__file__).resolve().parent
HEAD, TAIL, SHAKESPEARE = 110_000, 40_000, 100_000
WHOLE = {"pg11-alices-adventures-in-wonderland.txt"}


def _blank(line: bytes) -> bool:
    return not line.strip()


def _take(lines: list[bytes], limit: int, from_end: bool = False) -> int:
    """How many lines (from the start, or the end) make at most `limit` bytes, ending at a blank
    line."""
    order = range(len(lines) - 1, -1, -1) if from_end else range(len(lines))
    size, best = 0, 0
    for n, i in enumerate(order, 1):
        size += len(lines[i]) + 1
        if size > limit:
            break
        if _blank(lines[i]):
            best = n
    return best


def excerpt(raw: bytes) -> tuple[bytes, dict]:
    lines = raw.split(b"\n")
    report = clean_text(raw)[1]
    head, tail = report.cut_head_lines, report.cut_tail_lines
    body = lines[head : len(lines) - tail]
    keep_head = _take(body, HEAD)
    keep_tail = _take(body, TAIL, from_end=True)
    kept = body[:keep_head] + body[len(body) - keep_tail :]
    out = b"\n".join(lines[:head] + kept + lines[len(lines) - tail :])
    return out, {"body_lines": len(body), "kept_head": keep_head, "kept_tail": keep_tail}


def main() -> None:
    rows = []
    manifest = (SHARED / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header, entries = manifest[0].split("\t"), [m.split("\t") for m in manifest[1:]]
    for entry in entries:
        row = dict(zip(header, entry, strict=True))
        raw = (SHARED / row["file"]).read_bytes()
        if row["file"] in WHOLE:
            data, note = raw, "whole"
        elif not row["gutenberg_id"]:
            lines = raw.split(b"\n")
            # up to the line before a blank one: the text ends as the whole file does
            data = b"\n".join(lines[: _take(lines, SHAKESPEARE) - 1]) + b"\n"
            note = f"the first {len(data):,} of {len(raw):,} bytes, cut at a blank line"
        else:
            data, info = excerpt(raw)
            note = (
                f"header and footer whole; of the body's {info['body_lines']:,} lines the first "
                f"{info['kept_head']:,} and the last {info['kept_tail']:,}"
            )
        (OUT / row["file"]).write_bytes(data)
        row.update(bytes=str(len(data)), sha256=hashlib.sha256(data).hexdigest())
        rows.append(row)
        print(f"{row['file']}: {len(data):,} bytes ({note})")
    lines = ["\t".join(header)] + ["\t".join(r[h] for h in header) for r in rows]
    (OUT / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
