"""Judging a run, as `authorgen eval` does: its loss in nats and bits per character on held-out
text (`losses`), and what its samples are like: whether a classifier can tell them from the
author's own held-out pages (`realism`), how much they copy from the corpus, how many of their
words the training text does not have (`words`), how varied they are (distinct-n) and how close
their style is to the author's (`style`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from authorgen.clean import clean_text
from authorgen.config import REQUEST_FIELDS, SampleConfig
from authorgen.corpus import Corpus, Split, TextSlice, list_corpora, read_chunks, split_corpus
from authorgen.data import encode_split
from authorgen.errors import DataError, UsageError
from authorgen.files import cache_dir
from authorgen.losses import bits, token_probabilities
from authorgen.realism import MIN_TEXTS, SAMPLES, realism
from authorgen.sample import Generation
from authorgen.style import compare, words_of
from authorgen.words import invented_in, pooled

STYLE_CHARS = 300_000  # characters of each corpus a style comparison reads
HELDOUT_CHARS = 4_000_000  # characters of held-out text realism cuts its excerpts from, at most


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
    # each token's probability, once: the model's loss, and the mix's where the run has counts
    model_p = token_probabilities(run.model, val.ids, torch.device(device))
    total, count = float(-np.log(model_p).sum()), len(model_p)
    loss = total / val.predicted_chars
    result = {
        "heldout": split.description,
        "val_loss": round(loss, 5),
        "val_bpc": round(bits(loss), 5),
        "perplexity": round(math.exp(total / count), 3),
        "tokens": count,
        "chars": val.predicted_chars,
        "unk_share": round(val.unk / len(val.ids), 5),
    }
    counts = run.ngrams()
    if counts is not None:  # with the weights fitted at the end of training
        mixed = counts.nll(model_p, val.ids) / val.predicted_chars
        result.update(mixed_val_loss=round(mixed, 5), mixed_val_bpc=round(bits(mixed), 5))
    return result


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


def own_texts(run_config: dict, corpora_dir) -> tuple[str | None, str | None]:
    """The run's own held-out and training texts (up to HELDOUT_CHARS each), or Nones when its
    corpus is gone."""
    data = run_config.get("data", {})
    try:
        corpus = Corpus.open(corpora_dir, data.get("corpus") or "?")
    except (DataError, UsageError):
        return None, None
    split = split_corpus(corpus, data.get("holdout"))
    return _text_of(split.val, HELDOUT_CHARS), _text_of(split.train, HELDOUT_CHARS)


def heldout_invented(run, split) -> dict | None:
    """The share of the held-out text's words that the training text does not have: what real
    pages of the author score (None for a run without an index)."""
    index = run.originality_index()
    return invented_in(read_chunks(split.val), index.vocabulary().words) if index else None


def sample_report(
    run,
    config,
    seeds,
    device,
    candidates: dict,
    author: str | None,
    heldout: str | None = None,
    training: str | None = None,
) -> dict:
    """Generate samples and describe them: realism against the `heldout` text (when given, and
    with enough samples; the `training` text's pages beside), originality, invented words,
    distinct-n, style."""
    index = run.originality_index()
    counts = run.ngrams(config.ngrams)
    generation = Generation(run.model, run.tokenizer, "", config, seeds, device, index, counts)
    samples = [s for _, _, s in generation if s]
    texts = [s.text for s in samples]
    reports = [s.originality for s in samples if s.originality]
    originality = words = None
    if reports:
        words = pooled(reports)
        shares = [r["novel_8gram_share"] for r in reports if r["novel_8gram_share"] is not None]
        originality = {
            "longest_copy_chars": max(r["longest_copy_chars"] for r in reports),
            "mean_longest_copy_chars": round(
                sum(r["longest_copy_chars"] for r in reports) / len(reports), 1
            ),
            "novel_8gram_share": round(sum(shares) / len(shares), 4) if shares else None,
        }
    style = compare("\n\n".join(texts), candidates, author) if candidates else None
    judged = None
    if heldout and len(texts) >= MIN_TEXTS:
        judged = realism(texts, heldout, config.length, seeds[0], training)
    return {
        "temperature": config.temperature,
        "known_words": generation.jobs[0].known_words,
        "ngrams": generation.jobs[0].ngrams is not None,
        "samples": len(samples),
        "sample_chars": config.length,
        "seed": seeds[0],
        "realism": judged,
        "originality": originality,
        "invented_words": words["invented_words"] if words else None,
        "distinct": {f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "style": style,
        "texts": texts,
    }


@dataclass
class EvalResult:
    """What `authorgen eval` found: the held-out loss and, per temperature, a sample report."""

    run: str
    corpus: str | None  # the run's own corpus
    loss: dict  # heldout_loss's fields
    samples: int  # per temperature
    temperatures: list[float]
    reports: list[dict] = field(default_factory=list)  # sample_report's, without the texts
    heldout_invented: dict | None = None  # heldout_invented's

    def to_dict(self) -> dict:
        """The JSON `eval --json` prints: the loss, the first temperature's report at the top
        level, and with several temperatures every report under `sweep`."""
        first = self.reports[0] if self.reports else {}
        result = {
            "run": self.run,
            "corpus": self.corpus,
            **self.loss,
            "realism": first.get("realism"),
            "originality": first.get("originality"),
            "invented_words": first.get("invented_words"),
            "heldout_invented_words": (self.heldout_invented or {}).get("invented_words"),
            "known_words": first.get("known_words"),
            "ngrams": first.get("ngrams"),
            "distinct": first.get("distinct"),
            "style": first.get("style"),
            "samples": self.samples,
            "temperature": self.temperatures[0],
        }
        if len(self.temperatures) > 1:
            result["sweep"] = self.reports
        return result


def evaluate_run(
    corpora_dir: Path,
    checkpoints_dir: Path,
    run_ref: str,
    *,
    text: Path | None = None,
    corpus: str | None = None,
    samples: int = SAMPLES,
    length: int = 1000,
    temperatures: Sequence[float] | None = None,
    seed: int = 0,
    device: str = "auto",
    known_words: bool | None = None,
    ngrams: bool | None = None,
) -> EvalResult:
    """Measure run `run_ref` (a name or a folder) on held-out text (`heldout_split`: `text`,
    `corpus`, or its own), then judge `samples` samples of `length` characters at each
    temperature (generate's default when none is given), seeded from `seed` (with `known_words`
    and `ngrams` as `generate` takes them). On the run's own held-out text, what the first
    temperature's samples are like is kept in the run (`checkpoint.save_judgement`).

    Raises:
        UsageError: for a bad number of samples or temperature.
        DataError: when the run or the text to evaluate on is missing or damaged.
    """
    from authorgen.checkpoint import load_run, resolve_run
    from authorgen.devices import resolve_device

    if samples < 0:
        raise UsageError(f"--samples must be 0 or more (got {samples})")
    temperatures = list(temperatures or [SampleConfig.temperature])
    configs = [
        SampleConfig(
            temperature=t,
            length=length,
            n=max(samples, 1),
            known_words=known_words,
            ngrams=ngrams,
        )
        for t in temperatures
    ]
    dev = resolve_device(device)
    run = load_run(resolve_run(run_ref, checkpoints_dir), dev)
    split = heldout_split(run.config, corpora_dir, text, corpus)
    result = EvalResult(
        run=run.path.name,
        corpus=run.config.get("data", {}).get("corpus"),
        loss=heldout_loss(run, split, dev),
        samples=samples,
        temperatures=list(temperatures),
        heldout_invented=heldout_invented(run, split),
    )
    if samples:
        candidates, author = style_candidates(run.config, corpora_dir)
        seeds = list(range(seed, seed + samples))
        heldout = _text_of(split.val, HELDOUT_CHARS)
        training = _text_of(split.train, HELDOUT_CHARS)
        for config in configs:
            report = sample_report(run, config, seeds, dev, candidates, author, heldout, training)
            report.pop("texts")
            result.reports.append(report)
        own = text is None and corpus in (None, result.corpus)
        if own and result.reports[0]["realism"] is not None:
            from authorgen.checkpoint import save_judgement

            save_judgement(run.path, _judgement(result.reports[0], configs[0]))
    return result


def _judgement(report: dict, config: SampleConfig) -> dict:
    """What is kept of a report in the run: realism beside the longest copy, and how the
    samples were written."""
    from authorgen.files import utc_now

    judged = report["realism"]
    return {
        "at": utc_now(),
        "realism": {k: judged[k] for k in ("auc", "se", "told_apart", "texts", "chars")},
        "floor": {k: judged["floor"][k] for k in ("auc", "se")},
        "training_pages": (judged["training_pages"] or {}).get("auc"),
        "longest_copy_chars": (report["originality"] or {}).get("longest_copy_chars"),
        "invented_words": report["invented_words"],
        "sampled": {k: v for k, v in config.to_dict().items() if k not in REQUEST_FIELDS},
    }
