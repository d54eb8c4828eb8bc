"""Ensembling a trained character model with the training text's n-gram statistics (issue 19).

Does mixing a run's predictions with a character n-gram model of its training text lower the
validation loss? The n-gram model is interpolated Kneser-Ney (one discount per order, 0.75;
continuation counts below the top order) over the training characters of nanoGPT's split, the
one `shakespeare_char.py` trains on. The two are mixed per character,

    p(x) = w * p_model(x) + (1 - w) * p_ngram(x),

with the weight w either one number or one per "longest context the training text has seen"
(0 .. order - 1 characters): where the n-gram model has seen a long context it may deserve more
weight. The weights are fitted on one half of the validation text and scored on the other, both
ways round (two-fold), so the reported loss is never measured on the text its weights were
fitted to. The model's loss is computed as training computes it (`losses.total_nll`'s streams).

    python benchmarks/shakespeare_char.py --out /tmp/run      # keep a trained run
    python benchmarks/ngram_mix.py /tmp/run --order 8

Prints a human summary on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from authorgen.checkpoint import load_run
from authorgen.clean import decode, normalize
from authorgen.corpus import VAL_FRACTION
from authorgen.data import IGNORE, eval_streams

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DISCOUNT = 0.75


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@torch.no_grad()
def model_probabilities(model, ids: np.ndarray) -> np.ndarray:
    """p_model of each token of `ids` after the first (index i: of ids[i + 1]), computed in the
    streams validation uses, so their mean -log is the run's validation loss."""
    probs = np.full(len(ids) - 1, np.nan)
    n = len(ids) - 1
    n_streams = max(1, min(64, n))
    length = -(-n // n_streams)
    rows = np.arange(n_streams)[:, None] * length
    state = None
    for t, (x, y) in zip(
        range(0, length, model.eval_chunk), eval_streams(ids, 64, model.eval_chunk), strict=True
    ):
        at = rows + np.arange(t, min(t + model.eval_chunk, length))
        logits, state = model(x, state)
        logp = F.log_softmax(logits.float(), dim=-1)
        mine = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0].exp().numpy()
        valid = (y != IGNORE).numpy()
        probs[at[valid]] = mine[valid]
    assert not np.isnan(probs).any()
    return probs


class KneserNey:
    """Interpolated Kneser-Ney over characters, contexts of up to `order - 1` characters."""

    def __init__(self, text: str, order: int, vocabulary: int):
        self.order, self.vocabulary = order, vocabulary
        grams = [
            Counter(text[i : i + n] for i in range(len(text) - n + 1)) for n in range(1, order + 1)
        ]
        # level k predicts from k characters: the top level counts occurrences, the others
        # count the distinct characters seen before the (k + 1)-gram (continuation counts)
        self.counts: list[dict[str, int]] = []
        for n in range(1, order + 1):
            if n == order:
                self.counts.append(grams[n - 1])
            else:
                self.counts.append(Counter(g[1:] for g in grams[n]))
        self.totals: list[dict[str, int]] = []  # per context: sum of counts
        self.types: list[dict[str, int]] = []  # per context: distinct characters after it
        for counts in self.counts:
            totals, types = Counter(), Counter()
            for gram, c in counts.items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.totals.append(totals)
            self.types.append(types)

    def distribution(self, before: str, alphabet: list[str]) -> tuple[np.ndarray, int]:
        """p(c | before) for each character of `alphabet`, and the longest context seen."""
        pairs = [self.probability(before, c) for c in alphabet]
        return np.array([p for p, _ in pairs]), pairs[0][1]

    def probability(self, before: str, char: str) -> tuple[float, int]:
        """p(char | the characters before it), and the longest context the text has seen."""
        p, seen = 1.0 / self.vocabulary, 0
        for k in range(self.order):
            if k > len(before):
                break
            context = before[len(before) - k :] if k else ""
            total = self.totals[k].get(context, 0)
            if not total:
                break
            seen = k
            count = self.counts[k].get(context + char, 0)
            p = (max(count - DISCOUNT, 0.0) + DISCOUNT * self.types[k][context] * p) / total
        return p, seen


def fit_weights(pm: np.ndarray, pn: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """The model's weight per group (a grid of 0 .. 1 by 0.01) that minimises the mixed loss."""
    grid = np.linspace(0.0, 1.0, 101)
    weights = np.ones(n_groups)
    for g in range(n_groups):
        mine = groups == g
        if not mine.any():
            continue
        losses = [-np.log(w * pm[mine] + (1 - w) * pn[mine]).sum() for w in grid]
        weights[g] = grid[int(np.argmin(losses))]
    return weights


def two_fold(
    pm: np.ndarray, pn: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[float, list]:
    """Nats per character of the mix, each half scored with weights fitted on the other."""
    half = len(pm) // 2
    halves = [np.arange(half), np.arange(half, len(pm))]
    total, fitted = 0.0, []
    for fit, score in ((halves[0], halves[1]), (halves[1], halves[0])):
        w = fit_weights(pm[fit], pn[fit], groups[fit], n_groups)
        ws = w[groups[score]]
        total += -np.log(ws * pm[score] + (1 - ws) * pn[score]).sum()
        fitted.append([round(float(x), 2) for x in w])
    return total, fitted


@torch.no_grad()
def sample(model, tokenizer, ngram, weights, temperature, length, seed) -> str:
    """`length` characters drawn from the mix (weights: the model's, per longest context seen;
    all 1: the model alone) at `temperature`, applied to the mixed probabilities."""
    alphabet = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
    generator = torch.Generator().manual_seed(seed)
    text, state = "\n", None
    idx = torch.tensor([tokenizer.encode(text)])
    for _ in range(length):
        logits, state = model(idx, state)
        pm = torch.softmax(logits[0, -1].float(), dim=-1).numpy()
        if weights is None:
            p = pm
        else:
            pn, seen = ngram.distribution(text[len(text) + 1 - ngram.order :], alphabet)
            p = weights[seen] * pm + (1 - weights[seen]) * pn
        p = torch.from_numpy(p).log() / temperature
        token = int(torch.multinomial(torch.softmax(p, dim=-1), 1, generator=generator))
        text += alphabet[token]
        idx = torch.tensor([[token]])
    return text[1:]


def originality(run, ngram, weights, temperatures, samples, length) -> dict:
    """Mean longest verbatim copy, novel 8-gram share and invented-word share of `samples`
    texts per temperature, from the model alone and from the mix (the same seeds)."""
    index = run.originality_index()
    rows = {}
    for temperature in temperatures:
        for name, w in (("model", None), ("mix", weights)):
            reports = [
                index.report(sample(run.model, run.tokenizer, ngram, w, temperature, length, s))
                for s in range(samples)
            ]
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
    parser.add_argument("--order", type=int, nargs="+", default=[4, 6, 8, 10])
    parser.add_argument("--samples", type=int, default=10, help="texts per temperature")
    parser.add_argument("--length", type=int, default=1000, help="characters per text")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 1.0])
    parser.add_argument("--sample-order", type=int, default=8, help="the n-gram order sampled")
    args = parser.parse_args()
    text = normalize(decode(args.text.read_bytes())[0])
    cut = int(len(text) * (1 - VAL_FRACTION))
    train_text, val_text = text[:cut], text[cut:]
    run = load_run(args.run)
    if run.tokenizer.kind != "char":
        raise SystemExit("this mixes per character: it needs a run with the char tokenizer")
    ids = np.asarray(run.tokenizer.encode(val_text), dtype=np.int64)
    if len(ids) != len(val_text):
        raise SystemExit("the run's tokenizer does not spell one token per character")
    t0 = time.perf_counter()
    pm = model_probabilities(run.model, ids)
    chars = len(val_text)  # losses per character of the validation text, as training reports
    model_loss = -np.log(pm).sum() / chars
    log(f"model: {model_loss:.4f} nats/char ({time.perf_counter() - t0:.1f}s)")
    result = {
        "run": str(args.run),
        "model_nats_per_char": round(float(model_loss), 4),
        "orders": {},
    }
    for order in args.order:
        t0 = time.perf_counter()
        ngram = KneserNey(train_text, order, run.tokenizer.vocab_size)
        pairs = [
            ngram.probability(val_text[max(0, i + 2 - order) : i + 1], val_text[i + 1])
            for i in range(len(pm))
        ]
        pn = np.array([p for p, _ in pairs])
        seen = np.array([s for _, s in pairs])
        ngram_loss = -np.log(pn).sum() / chars
        one, one_w = two_fold(pm, pn, np.zeros(len(pm), dtype=int), 1)
        per, per_w = two_fold(pm, pn, seen, order)
        row = {
            "ngram_nats_per_char": round(float(ngram_loss), 4),
            "mix_one_weight": round(float(one / chars), 4),
            "mix_one_weight_fitted": one_w,
            "mix_per_context": round(float(per / chars), 4),
            "mix_per_context_fitted": per_w,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        result["orders"][order] = row
        log(f"order {order}: {row}")
    if args.samples:
        ngram = KneserNey(train_text, args.sample_order, run.tokenizer.vocab_size)
        pairs = [
            ngram.probability(val_text[max(0, i + 2 - ngram.order) : i + 1], val_text[i + 1])
            for i in range(len(pm))
        ]
        pn, seen = np.array([p for p, _ in pairs]), np.array([s for _, s in pairs])
        weights = fit_weights(pm, pn, seen, ngram.order)  # on the whole validation text
        log(f"sampling order {ngram.order}, the model's weights {weights.tolist()}")
        result["samples"] = originality(
            run, ngram, weights, args.temperatures, args.samples, args.length
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
