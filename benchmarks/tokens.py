"""Token ids at scale: encoding time and training memory on a 200 MB corpus, against 20 MB.

Builds corpora from ../shared/corpora by repetition (every book, cleaned, copied until the size
is reached, plus Alice once as the held-out work), then for each size runs `authorgen train` in a
fresh process twice: cold (the char tokenizer trained and the ids encoded into the cache) and
warm (the cached ids reused), 100 steps each, and reads the process's peak RSS from the kernel
(wait4). Then it times sentencepiece (bpe and unigram) and the word tokenizer on 10 MB.

    python benchmarks/tokens.py                  # 20 MB and 200 MB, then the 10 MB tokenizers
    python benchmarks/tokens.py --sizes 20 --skip-tokenizers

Needs about 1.5 GB of disk in a temporary folder. Prints a table on stderr and one JSON object
per measurement on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from authorgen.clean import clean_text
from authorgen.config import TokenizerConfig
from authorgen.corpus import Corpus
from authorgen.tokenizer import train_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
MB = 1_000_000


def books() -> str:
    """Every shared book, cleaned, as one text (about 6 MB)."""
    texts = []
    for path in sorted(SHARED.glob("*.txt")):
        texts.append(clean_text(path.read_bytes())[0])
    return "\n\n".join(texts)


def build_corpus(home: Path, name: str, size_mb: int, text: str) -> None:
    """A corpus of `size_mb` MB: copies of `text`, and Alice as the smallest (held-out) work."""
    corpus = Corpus.open_or_new(home / "corpora", name)
    copies = max(1, round(size_mb * MB / len(text.encode())))
    for i in range(copies):
        corpus.add_work(text.encode(), source="local", work_id=f"copy{i}", title=f"copy {i}")
    alice = (SHARED / "pg11-alices-adventures-in-wonderland.txt").read_bytes()
    corpus.add_work(alice, source="local", work_id="alice", title="Alice")


def train_in_child(home: Path, corpus: str, run: str) -> dict:
    """`authorgen train CORPUS --steps 100` in a fresh process; its peak RSS and time."""
    env = {**os.environ, "AUTHORGEN_HOME": str(home), "NO_COLOR": "1"}
    env.pop("AUTHORGEN_CACHE", None)
    command = [sys.executable, "-m", "authorgen", "train", corpus, "--steps", "100"]
    command += ["--eval-every", "100", "--device", "cpu", "--name", run, "--force"]
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read()
    elapsed = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"training failed:\n{err}")
    lines = [line.strip() for line in err.splitlines()]
    encode_line = next((x for x in lines if x.startswith("token ids")), "")
    tokenizer_line = next((x for x in lines if x.startswith("tokenizer")), "")
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        "elapsed_s": round(elapsed, 1),
        "tokenizer": tokenizer_line,
        "token_ids": encode_line,
    }


def time_tokenizers(text: str) -> list[dict]:
    """Train each tokenizer on `text` (10 MB) and encode it; seconds and tokens per character."""
    rows = []
    for kind, vocab in [("word", 10_000), ("bpe", 2_000), ("unigram", 2_000), ("bpe", 8_000)]:
        config = TokenizerConfig(kind, vocab_size=vocab)
        start = time.monotonic()
        tok = train_tokenizer(config, [text])
        trained = time.monotonic() - start
        start = time.monotonic()
        ids = sum(len(tok.encode_array(text[i : i + MB])) for i in range(0, len(text), MB))
        encoded = time.monotonic() - start
        rows.append(
            {
                "benchmark": "tokenizer-10MB",
                "tokenizer": kind,
                "vocab_size": tok.vocab_size,
                "train_s": round(trained, 1),
                "encode_s": round(encoded, 1),
                "tokens_per_char": round(ids / len(text), 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,200", help="corpus sizes in MB (default 20,200)")
    parser.add_argument("--skip-tokenizers", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared/corpora beside the repo")
    text = books()
    print(f"books: {len(text):,} characters once", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            name = f"c{size}mb"
            start = time.monotonic()
            build_corpus(home, name, size, text)
            print(f"{name}: built in {time.monotonic() - start:.0f} s", file=sys.stderr)
            for phase in ("cold", "warm"):
                row = {"benchmark": "train-100-steps", "corpus_mb": size, "cache": phase}
                row.update(train_in_child(home, name, f"{name}-{phase}"))
                print(json.dumps(row), flush=True)
                print(
                    f"{name} {phase}: peak RSS {row['peak_rss_mb']} MB, {row['elapsed_s']} s; "
                    f"{row['token_ids']}",
                    file=sys.stderr,
                )
            corpus_dir = home / "corpora" / name
            for sub in ("works", "raw"):  # keep the disk small between sizes
                for path in (corpus_dir / sub).iterdir():
                    path.unlink()
    if not args.skip_tokenizers:
        ten = (text * (10 * MB // len(text) + 1))[: 10 * MB]
        for row in time_tokenizers(ten):
            print(json.dumps(row), flush=True)
            print(
                f"10 MB {row['tokenizer']} {row['vocab_size']}: trained in {row['train_s']} s, "
                f"encoded in {row['encode_s']} s, {row['tokens_per_char']} tokens/char",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
