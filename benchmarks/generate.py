"""Generation speed: the KV cache against crop-and-recompute, start-up time, a command end to end.

(a) 2,000 characters from a transformer the size of nanoGPT's Shakespeare model (6 layers,
    6 heads, 384 wide, context 256, the 65 characters of Tiny Shakespeare; weights random, which
    costs the same) with `authorgen.sample.Generation` (KV cache, sliding past the context),
    against a cache-less sampler of the same model in the same process that crops the text to
    the last 256 tokens and runs the whole window at every step (nanoGPT's `generate`). Both use
    the same sampler chain and seed; their first 256 characters must be identical (both exact
    there), after which they differ: the sliding cache keeps keys computed with more context.
(b) `authorgen --help`, median of 10 fresh processes, and whether `import authorgen.cli`
    imports torch.
(c) `authorgen generate RUN --length 200` end to end (a fresh process: start, model load,
    generation), median of 5, for a run trained here for --train-time on Tiny Shakespeare with
    the sizes `authorgen train` picks.
(d) 200 and 2,000 characters from a 6 x 384 transformer run and a 2 x 256 LSTM run, end to end
    in fresh processes, and what the command adds to the torch import before its first
    character; --code measures another checkout (e.g. a worktree of an older commit) on the
    same runs, for a before and after in one run.

    python benchmarks/generate.py                 # all three
    python benchmarks/generate.py --only a --chars 500
    python benchmarks/generate.py --only d --code ../before     # another checkout, same runs

Prints a human summary on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def kv_cache_against_recompute(chars: int, threads: int | None) -> dict:
    import torch

    from authorgen.config import ModelConfig, SampleConfig
    from authorgen.models import build_model
    from authorgen.sample import Generation
    from authorgen.samplers import Sampler
    from authorgen.tokenizer.char import CharTokenizer

    if threads:
        torch.set_num_threads(threads)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    config = ModelConfig(
        model="transformer", vocab_size=tok.vocab_size, layers=6, heads=6, embedding_dim=384,
        mlp_dim=4 * 384, context=256, dropout=0.0,
    )  # fmt: skip
    model = build_model(config).eval()
    params = sum(p.numel() for p in model.parameters())
    sample = SampleConfig(temperature=0.8, length=chars)
    prompt = "ROMEO:\n"

    t0 = time.perf_counter()
    cached = next(s for _, _, s in Generation(model, tok, prompt, sample, [1]) if s).text
    cached_s = time.perf_counter() - t0
    log(f"(a) KV cache: {chars:,} characters in {cached_s:.2f}s")

    @torch.no_grad()
    def recompute() -> str:
        ids = tok.encode_prompt(prompt)
        generator = torch.Generator().manual_seed(1)
        sampler = Sampler(sample)
        out = []
        for _ in range(chars):
            window = torch.tensor([ids[-config.context :]])
            logits, _ = model(window)
            last = logits[:, -1].double()  # (1, V)
            last[:, tok.special_ids] = float("-inf")
            token = int(sampler.choose(last, [generator]))
            ids.append(token)
            out.append(tok.decode([token]))
        return "".join(out)

    t0 = time.perf_counter()
    plain = recompute()
    plain_s = time.perf_counter() - t0
    log(f"(a) crop and recompute: {chars:,} characters in {plain_s:.2f}s")
    differ = next((i for i, (a, b) in enumerate(zip(cached, plain, strict=False)) if a != b), None)
    log(
        f"(a) {plain_s / cached_s:.1f}x faster with the cache ({params / 1e6:.2f}M parameters, "
        f"{1000 * cached_s / chars:.1f} against {1000 * plain_s / chars:.1f} ms per character); "
        f"the two texts first differ at character {differ}"
    )
    return {
        "params": params,
        "chars": chars,
        "threads": torch.get_num_threads(),
        "kv_cache_s": round(cached_s, 3),
        "recompute_s": round(plain_s, 3),
        "speedup": round(plain_s / cached_s, 2),
        "first_difference_at": differ,
    }


def _median_wall(args: list[str], repeats: int, env: dict) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return statistics.median(times), times


def help_time(env: dict) -> dict:
    exe = [sys.executable, "-m", "authorgen"]
    median, times = _median_wall([*exe, "--help"], 10, env)
    bare, _ = _median_wall([sys.executable, "-c", "pass"], 10, env)
    probe = "import sys, authorgen.cli; print('torch' in sys.modules)"
    torch_loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env
    ).stdout.strip()
    log(
        f"(b) authorgen --help: median {median:.3f}s of 10 (python alone {bare:.3f}s); "
        f"torch imported by the cli: {torch_loaded}"
    )
    return {
        "help_median_s": round(median, 3),
        "help_times_s": [round(t, 3) for t in times],
        "python_alone_s": round(bare, 3),
        "torch_imported": torch_loaded == "True",
    }


def generate_end_to_end(train_time: str, env: dict) -> dict:
    exe = [sys.executable, "-m", "authorgen"]
    with tempfile.TemporaryDirectory() as home:
        env = {**env, "AUTHORGEN_HOME": home, "AUTHORGEN_CACHE": str(Path(home) / "cache")}
        for args in (
            ["fetch", str(SHAKESPEARE), "--name", "shakespeare", "-q"],
            ["train", "shakespeare", "--time", train_time, "-q"],
        ):
            subprocess.run([*exe, *args], check=True, env=env)
        config = json.loads((Path(home) / "checkpoints/shakespeare-lstm/config.json").read_text())
        cmd = [*exe, "generate", "shakespeare-lstm", "--length", "200", "--seed", "1", "-q"]
        median, times = _median_wall(cmd, 5, env)
        one = subprocess.run(
            [*exe, "generate", "shakespeare-lstm", "--length", "200", "--seed", "1"],
            capture_output=True,
            text=True,
            env=env,
        )
    model = config["model"]
    shape = f"{model['layers']}x{model['hidden']} {model['model']}"
    log(f"(c) authorgen generate RUN --length 200 ({shape}): median {median:.2f}s of 5")
    log(f"    its report: {one.stderr.strip().splitlines()[-1]}")
    return {
        "model": shape,
        "generate_200_median_s": round(median, 3),
        "times_s": [round(t, 3) for t in times],
    }


# `authorgen generate ...` in a fresh process, as the command runs it, saying on stderr when
# (time.perf_counter: the system's monotonic clock, the same in every process) it wrote its
# first character.
FIRST_CHARACTER = """
import sys, time
first, real = [], sys.stdout
class Out:
    def write(self, text):
        if text and not first:
            first.append(time.perf_counter())
        return real.write(text)
    def flush(self):
        real.flush()
sys.stdout = Out()
sys.argv = ["authorgen", "generate", *sys.argv[1:]]
from authorgen.cli import main
try:
    main()
finally:
    print(f"first character at {first[0]!r}", file=sys.stderr)
"""


def _imported(setting: str, env: dict, repeats: int = 5) -> float:
    """Median seconds from starting python to torch imported (not to the process's end: a
    process that imported torch takes a while more to exit)."""
    code = f"{setting}import time, torch; print(repr(time.perf_counter()))"
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        times.append(float(done.stdout) - t0)
    return statistics.median(times)


def runs_end_to_end(env: dict, code: str | None, repeats: int) -> dict:
    """(d) Two runs of the shapes that matter (a 6 x 384 transformer and the CPU plan's 2 x 256
    LSTM; weights after one step, which cost the same to run as trained ones), 200 and 2,000
    characters each, `repeats` fresh processes each: the median wall time of the command, and
    of its first character less that of `python -c "import torch"` (median of 5): what the
    command adds to importing torch. `code` (a checkout) measures that version of authorgen on
    the same runs."""
    exe = [sys.executable, "-m", "authorgen"]
    shapes = {
        "transformer 6x384": ["--model", "transformer", "--layers", "6", "--heads", "6",
                              "--embedding-dim", "384", "--context", "256", "--batch-size", "1"],
        "lstm 2x256": ["--preset", "lstm"],
    }  # fmt: skip
    rows = {}
    # the floor: python importing torch, with Python's default collector and with the
    # threshold the command sets before it imports torch (which makes the import faster too)
    floors = {
        gc: _imported(setting, env)
        for gc, setting in (
            ("default", ""),
            ("tuned", "import gc; gc.set_threshold(50_000, 10, 10); "),
        )
    }
    with tempfile.TemporaryDirectory() as home:
        env = {**env, "AUTHORGEN_HOME": home, "AUTHORGEN_CACHE": str(Path(home) / "cache")}
        subprocess.run([*exe, "fetch", str(SHAKESPEARE), "--name", "s", "-q"], check=True, env=env)
        for i, sizes in enumerate(shapes.values()):
            train = ["train", "s", *sizes, "--steps", "1", "--name", f"r{i}", "-q"]
            subprocess.run([*exe, *train], check=True, env=env)
        # the measured commands run in `home`: run here, `python -c` would import the
        # authorgen beside this script (the current directory comes first on sys.path) and
        # not `code`'s
        if code:
            env["PYTHONPATH"] = str(Path(code).resolve())
        # one step's weights write letter soup, which the known-words rule (where the checkout
        # has it) would refuse token after token, as it does not for trained runs: leave it out
        help_text = [*exe, "generate", "--help"]
        usage = subprocess.run(help_text, capture_output=True, text=True, env=env, cwd=home)
        rule = ["--any-words"] if "--any-words" in usage.stdout else []
        for i, name in enumerate(shapes):
            for chars in (200, 2000):
                args = [f"r{i}", "--length", str(chars), "--seed", "1", "-q", "--prompt", "", *rule]
                walls, firsts = [], []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-c", FIRST_CHARACTER, *args],
                        capture_output=True, text=True, env=env, cwd=home,
                    )  # fmt: skip
                    walls.append(time.perf_counter() - t0)
                    if done.returncode:
                        raise SystemExit(done.stderr)
                    said = done.stderr.strip().splitlines()[-1]
                    firsts.append(float(said.rsplit(" ", 1)[1]) - t0)
                wall, first = statistics.median(walls), statistics.median(firsts)
                rows[f"{name}, {chars} chars"] = row = {
                    "wall_s": round(wall, 3),
                    "chars_per_s": round(chars / wall, 1),
                    "first_char_s": round(first, 3),
                    **{
                        f"beyond_import_torch_{gc}_gc_s": round(first - t, 3)
                        for gc, t in floors.items()
                    },
                    **{f"import_torch_{gc}_gc_s": round(t, 3) for gc, t in floors.items()},
                }
                log(f"(d) {name}, {chars} chars: {row}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["a", "b", "c", "d"], help="run one part")
    parser.add_argument("--code", help="(d): measure the authorgen of this checkout instead")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes each, for (d)")
    parser.add_argument("--chars", type=int, default=2000, help="characters for (a)")
    parser.add_argument("--threads", type=int, help="torch threads for (a) (default: torch's)")
    parser.add_argument("--train-time", default="60s", help="training budget for (c)")
    args = parser.parse_args()
    if not SHAKESPEARE.is_file():
        raise SystemExit(f"needs {SHAKESPEARE}")
    env = {**os.environ, "NO_COLOR": "1"}
    result = {}
    if args.only in (None, "b"):
        result["help"] = help_time(env)
    if args.only in (None, "c"):
        result["generate"] = generate_end_to_end(args.train_time, env)
    if args.only in (None, "a"):
        result["kv_cache"] = kv_cache_against_recompute(args.chars, args.threads)
    if args.only in (None, "d"):
        result["end_to_end"] = runs_end_to_end(env, args.code, args.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
