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
