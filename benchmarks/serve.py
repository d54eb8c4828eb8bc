"""Load on `authorgen serve`: 1, 4 and 16 streaming clients at once against one run.

For each of two runs trained briefly here on Tiny Shakespeare (a char LSTM 2x256 and a char
transformer 4x256 with context 256; how well they are trained does not change their speed), a
server is started in its own process on 127.0.0.1, and for each level N clients each ask for
streamed 2,000-character completions one after another for --seconds. Reported per level:
errors, characters per second in all and per client (a char model writes a character per
token), time to first token (p50, p95), and the server's resident memory before the first
request and after the level. The clients are threads of this process reading the event stream
with http.client, so they take some of the same 2 cores.

    python benchmarks/serve.py                       # both runs, 20 s per level
    python benchmarks/serve.py --seconds 5 --levels 1,16
    python benchmarks/serve.py --hog                 # 16 clients, with and without a hog

With --hog, each run serves 16 clients twice: all alike, then with one of them asking for the
most one request may (8 samples of 25,000 characters: /health's max_work) each time. Reported:
the other 15 clients' characters per second and time to first token in both, and /health
polled 20 times a second throughout (failures, slowest answer).

Prints a human summary on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def train_runs(home: Path) -> None:
    from authorgen.config import ModelConfig, TrainConfig
    from authorgen.corpus import Split
    from authorgen.train import train

    text = SHAKESPEARE.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    split = Split.from_texts(text[:cut], text[cut:], "tinyshakespeare")
    config = TrainConfig(steps=30, context=128, batch_size=16, device="cpu", eval_every=30)
    models = {
        "lstm": ModelConfig(model="lstm", layers=2, hidden=256, embedding_dim=64),
        "transformer": ModelConfig(
            model="transformer", layers=4, embedding_dim=256, heads=4, context=256
        ),
    }
    for name, model in models.items():
        log(f"training {name} briefly (its speed, not its quality, is measured)")
        train(split, model, config, home / "checkpoints" / name)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def client(host, port, run, deadline, out, seed, hog=False):
    """Completions one after another until `deadline`: characters received, first-token times
    (a hog asks for 8 samples of 25,000 characters each time)."""
    chars, firsts, errors = 0, [], 0
    size = {"n": 8, "length": 25_000} if hog else {"length": 2000}
    while time.monotonic() < deadline:
        body = json.dumps(
            {"model": run, "prompt": "ROMEO:\n", "stream": True, "seed": seed, **size}
        )
        seed += 1
        sent = time.monotonic()
        conn = http.client.HTTPConnection(host, port, timeout=120)
        try:
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            if response.status != 200:
                errors += 1
                response.read()
                continue
            first = True
            while time.monotonic() < deadline:
                line = response.fp.readline()
                if not line or line.startswith(b"data: [DONE]"):
                    break  # (the connection stays open: keep-alive)
                if not line.startswith(b"data: {"):
                    continue
                if first:
                    firsts.append(time.monotonic() - sent)
                    first = False
                text = json.loads(line[6:])["choices"]
                chars += sum(len(c.get("text", "")) for c in text)
        except OSError:
            errors += 1
        finally:
            conn.close()
    out.append({"chars": chars, "firsts": firsts, "errors": errors, "hog": hog})


def poll_health(host, port, deadline, out) -> None:
    """GET /health 20 times a second until `deadline`: failures and the slowest answer."""
    failures, slowest, polls = 0, 0.0, 0
    while time.monotonic() < deadline:
        sent = time.monotonic()
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            failures += response.status != 200
        except OSError:
            failures += 1
        finally:
            conn.close()
        polls += 1
        slowest = max(slowest, time.monotonic() - sent)
        time.sleep(max(0.0, 0.05 - (time.monotonic() - sent)))
    out.update(polls=polls, failures=failures, slowest_ms=round(1000 * slowest, 1))


def level(url: str, run: str, clients: int, seconds: float, pid: int, hog: bool = False) -> dict:
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    out: list[dict] = []
    health: dict = {}
    start = time.monotonic()
    deadline = start + seconds
    threads = [
        threading.Thread(
            target=client, args=(host, int(port), run, deadline, out, 1000 * i, hog and i == 0)
        )
        for i in range(clients)
    ]
    threads.append(threading.Thread(target=poll_health, args=(host, int(port), deadline, health)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if hog:  # the others: the figures below are theirs
        out = [o for o in out if not o["hog"]]
        clients -= 1
    firsts = sorted(f for o in out for f in o["firsts"])
    total = sum(o["chars"] for o in out)
    return {
        "clients": clients,
        "errors": sum(o["errors"] for o in out),
        "chars_per_s": round(total / elapsed, 1),
        "chars_per_s_per_client": round(total / elapsed / clients, 1),
        "first_token_p50_ms": round(1000 * statistics.median(firsts), 1) if firsts else None,
        "first_token_p95_ms": (
            round(1000 * firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))], 1)
            if firsts
            else None
        ),
        "requests": len(firsts),
        "rss_mb_after": round(rss_mb(pid), 1),
        "health": health,
    }


def serve(home: Path, run: str, levels: list[int], seconds: float, hog: bool = False) -> dict:
    env = {**os.environ, "AUTHORGEN_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "authorgen", "serve", run, "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for line in process.stderr:
            found = re.search(r"(http://\S+/)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise SystemExit("the server did not start")
        before = rss_mb(process.pid)
        rows = []
        plan = [(16, False), (16, True)] if hog else [(clients, False) for clients in levels]
        for clients, with_hog in plan:
            row = level(url, run, clients, seconds, process.pid, with_hog)
            row["hog"] = with_hog
            rows.append(row)
            log(
                f"{run:12} {row['clients']:3} clients{' beside a hog' if with_hog else ''}: "
                f"{row['chars_per_s']:8.1f} chars/s in all, "
                f"{row['chars_per_s_per_client']:7.1f} per client, first token p50 "
                f"{row['first_token_p50_ms']} ms p95 {row['first_token_p95_ms']} ms, "
                f"errors {row['errors']}, RSS {row['rss_mb_after']} MB; /health "
                f"{row['health']['failures']} of {row['health']['polls']} failed, slowest "
                f"{row['health']['slowest_ms']} ms"
            )
        return {"run": run, "rss_mb_before": round(before, 1), "levels": rows}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--runs", default="lstm,transformer")
    parser.add_argument("--hog", action="store_true", help="16 clients, one asking the most.")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        train_runs(home)
        results = [serve(home, run, levels, args.seconds, args.hog) for run in args.runs.split(",")]
    for result in results:
        if args.hog:
            alone, beside = result["levels"]
            for key in ("chars_per_s_per_client", "first_token_p50_ms", "first_token_p95_ms"):
                if alone[key] and beside[key]:
                    beside[f"{key}_vs_without"] = round(beside[key] / alone[key], 2)
            continue
        one = next((r for r in result["levels"] if r["clients"] == 1), None)
        for row in result["levels"]:
            if one and one["chars_per_s"]:
                row["speedup_vs_one"] = round(row["chars_per_s"] / one["chars_per_s"], 2)
    print(json.dumps({"cpu": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
