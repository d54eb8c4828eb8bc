"""Validation loss in nats per character of the original text (DESIGN.md, Metrics).

Loss per character, not per token, so models with different tokenizers compare; bits per
character = nats / ln 2.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from authorgen.clean import clean_text
from authorgen.corpus import Corpus, Split, TextSlice, list_corpora, read_chunks, split_corpus
from authorgen.data import IGNORE, encode_split, eval_streams
from authorgen.errors import DataError
from authorgen.files import cache_dir
from authorgen.sample import Generation
from authorgen.style import compare, words_of


@torch.no_grad()
def total_nll(
    model, ids: torch.Tensor, device: torch.device, n_streams: int = 64
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every token of `ids` after the first, and its count.

    The text runs as `n_streams` contiguous streams fed `model.eval_chunk` tokens at a time, the
    state carried along: an RNN predicts each token from everything before it in its stream, a
    transformer from the `context - 1` tokens before it at most (its KV cache slides).
    """
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        for x, y in eval_streams(ids, n_streams, model.eval_chunk):
            x, y = x.to(device), y.to(device)
            logits, state = model(x, state)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                y.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            ).item()
            count += int((y != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


def validation_loss(model, ids: torch.Tensor, chars: int, device: torch.device) -> float:
    """Nats per character: the NLL of `ids[1:]` over the `chars` characters those tokens spell."""
    total, _ = total_nll(model, ids, device)
    return total / chars


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / math.log(2)


# --- evaluating a run: held-out loss, and what its samples are like ---------------------------

STYLE_CHARS = 300_000  # characters of each corpus a style comparison reads


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct word n-grams over all n-grams of the texts (Li et al. 2016); None when none."""
    grams = []
    for text in texts:
        words = words_of(text)
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return round(len(set(grams)) / len(grams), 4) if grams else None


def _text_of(parts, limit: int) -> str:
    out, size = [], 0
    for chunk in read_chunks(parts):
        out.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return "".join(out)[:limit]


def heldout_split(run_config: dict, corpora_dir, text_path=None, corpus_name=None):
    """What to evaluate on: a text file, another corpus (whole), or the run's own held-out part.

    Raises:
        DataError: when the run's corpus is gone and no other text is given.
    """
    data = run_config.get("data", {})
    if text_path is not None:
        try:
            raw = Path(text_path).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {text_path} ({exc.strerror}); give a text file") from None
        text = clean_text(raw)[0]
        return Split.from_texts("", text, f"the text of {Path(text_path).name}")
    name = corpus_name or data.get("corpus")
    if name is None:
        raise DataError("this run does not name its corpus; give --text FILE or --corpus NAME")
    corpus = Corpus.open(corpora_dir, name)
    if name == data.get("corpus"):
        return split_corpus(corpus, data.get("holdout"))
    parts = [TextSlice(corpus.path / w["file"]) for w in corpus.works]
    fingerprint = f"{corpus.sha256()} whole"
    return Split([], parts, f"all of corpus {name}", fingerprint, 0)


def heldout_loss(run, split, device) -> dict:
    """Nats and bits per character, and perplexity per token, of the run on `split.val`."""
    encoded = encode_split(split, run.tokenizer, cache_dir())
    val = encoded.val
    if len(val.ids) < 2:
        raise DataError("the held-out text is too short to evaluate (under 2 tokens)")
    total, count = total_nll(run.model, val.ids, torch.device(device))
    loss = total / val.predicted_chars
    return {
        "heldout": split.description,
        "val_loss": round(loss, 5),
        "val_bpc": round(bits(loss), 5),
        "perplexity": round(math.exp(total / count), 3),
        "tokens": count,
        "chars": val.predicted_chars,
        "unk_share": round(val.unk / len(val.ids), 5),
    }


def style_candidates(run_config: dict, corpora_dir) -> tuple[dict[str, str], str | None]:
    """The author's held-out text and every other corpus's text (name -> text), and the
    author's name; empty when the run's corpus is not there."""
    data = run_config.get("data", {})
    author = data.get("corpus")
    candidates: dict[str, str] = {}
    try:
        own = Corpus.open(corpora_dir, author) if author else None
    except DataError:
        own = None
    if own is None:
        return {}, None
    candidates[author] = _text_of(split_corpus(own, data.get("holdout")).val, STYLE_CHARS)
    found, _ = list_corpora(corpora_dir)
    for corpus in found:
        if corpus.name != author and corpus.works:
            parts = [corpus.path / w["file"] for w in corpus.works]
            candidates[corpus.name] = _text_of([TextSlice(p) for p in parts], STYLE_CHARS)
    return candidates, author


def sample_report(run, config, seeds, device, candidates: dict, author: str | None) -> dict:
    """Generate samples and describe them: originality, distinct-n, style."""
    index = run.index()
    samples = [
        s for _, _, s in Generation(run.model, run.tokenizer, "", config, seeds, device, index) if s
    ]
    texts = [s.text for s in samples]
    reports = [s.originality for s in samples if s.originality]
    originality = None
    if reports:
        shares = [r["novel_8gram_share"] for r in reports if r["novel_8gram_share"] is not None]
        originality = {
            "longest_copy_chars": max(r["longest_copy_chars"] for r in reports),
            "mean_longest_copy_chars": round(
                sum(r["longest_copy_chars"] for r in reports) / len(reports), 1
            ),
            "novel_8gram_share": round(sum(shares) / len(shares), 4) if shares else None,
        }
    style = compare("\n\n".join(texts), candidates, author) if candidates else None
    return {
        "temperature": config.temperature,
        "samples": len(samples),
        "sample_chars": config.length,
        "seed": seeds[0],
        "originality": originality,
        "distinct": {f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "style": style,
        "texts": texts,
    }


def compare_models(
    corpora_dir: Path,
    checkpoints_dir: Path,
    corpus: str,
    models: list[str],
    tokenizers: list[str],
    given: dict,
    *,
    samples: int = 5,
    length: int = 1000,
    force: bool = False,
    callback=None,
    on_start=None,
) -> tuple[list[dict], Path]:
    """Train every model x tokenizer on `corpus` with the same budget, split and seed (`given`),
    judge each, draw the chart; returns the leaderboard rows (best first) and the chart's path.

    Runs are named CORPUS-compare-MODEL-TOKENIZER; existing ones are replaced only with `force`.

    Raises:
        UsageError: when a run of the comparison exists already and `force` is not set.
    """
    from authorgen.charts import compare_chart
    from authorgen.checkpoint import CONFIG, load_run, read_metrics
    from authorgen.config import SampleConfig, TokenizerConfig
    from authorgen.errors import UsageError
    from authorgen.files import check_name
    from authorgen.train import resolve_device, train_corpus

    check_name(corpus, "corpus")
    combos = [(m, t) for m in models for t in tokenizers]
    names = {c: f"{corpus}-compare-{c[0]}-{c[1]}" for c in combos}
    existing = [n for n in names.values() if (Path(checkpoints_dir) / n / CONFIG).exists()]
    if existing and not force:
        raise UsageError(
            f"runs from an earlier comparison exist ({', '.join(existing)}); add --force to "
            "replace them"
        )
    device = resolve_device(given.get("device", "auto"))
    rows, curves = [], []
    candidates, author = None, None
    for i, (model, kind) in enumerate(combos):
        if on_start:
            on_start(i, len(combos), model, kind)
        result = train_corpus(
            corpora_dir,
            checkpoints_dir,
            corpus,
            {**given, "model": model},
            run_name=names[(model, kind)],
            force=True,
            callback=callback,
            tokenizer_config=TokenizerConfig(kind=kind),
        )
        run = load_run(result.run_dir, device)
        if candidates is None:
            candidates, author = style_candidates(run.config, corpora_dir)
        row = {
            "run": result.run_dir.name,
            "model": model,
            "tokenizer": kind,
            "val_bpc": round(result.best_val_bpc, 4),
            "val_loss": round(result.best_val_loss, 4),
            "params": result.params,
            "steps": result.steps,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "time_s": round(result.elapsed_s, 1),
        }
        if samples:
            config = SampleConfig(temperature=0.8, length=length, n=samples)
            report = sample_report(run, config, list(range(samples)), device, candidates, author)
            style = report["style"]
            row.update(
                {
                    "originality": report["originality"],
                    "distinct_2": report["distinct"]["distinct_2"],
                    "style_delta": style["delta"][author] if style and author else None,
                    "style_rank": style["rank"] if style else None,
                    "style": style["summary"] if style else None,
                }
            )
        rows.append(row)
        per_char = run.config.get("tokenizer", {}).get("tokens_per_char") or 1.0
        metrics = [{**r, "chars": r["tokens"] / per_char} for r in read_metrics(result.run_dir)]
        curves.append((f"{model} {kind}", metrics))
    chart = Path(checkpoints_dir) / f"{corpus}-compare.png"
    compare_chart(curves, chart, f"{corpus}: same split, seed and budget")
    rows.sort(key=lambda r: r["val_bpc"])
    return rows, chart
