"""Comparing models, as `authorgen compare` does: every model x tokenizer trained on one corpus
with the same budget, split and seed, judged as `eval` judges, ranked by validation bits per
character, and drawn on one chart of validation bpc against characters seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from authorgen.callbacks import Callback
from authorgen.charts import compare_chart
from authorgen.checkpoint import CONFIG, load_run, read_config, read_metrics, resolve_run
from authorgen.config import SampleConfig, TokenizerConfig, TrainConfig, TrainOptions
from authorgen.devices import resolve_device
from authorgen.errors import DataError, UsageError
from authorgen.evaluate import own_texts, sample_report, style_candidates
from authorgen.families import is_hf_folder
from authorgen.files import check_name
from authorgen.losses import bits
from authorgen.pretrained import open_base
from authorgen.train import train_corpus

DEFAULT_TIME_S = 120.0  # each run's budget when none is given
EVALS_PER_RUN = 8  # about this many evaluations per run, so the chart has curves to compare


def budget(steps: int | None, time_s: float | None, seed: int | None, device: str) -> TrainOptions:
    """The options every run of a comparison shares: the budget (2 minutes when none is given),
    an evaluation cadence giving about `EVALS_PER_RUN` points per curve, the seed and device.

    Raises:
        UsageError: for a budget or seed that training would refuse, before anything trains.
    """
    if steps is None and time_s is None:
        time_s = DEFAULT_TIME_S
    options = TrainOptions(
        steps=steps,
        time_s=time_s,
        seed=seed if seed is not None else TrainConfig.seed,
        device=device,
        eval_every=max(1, steps // EVALS_PER_RUN) if steps else None,
        eval_every_s=max(5.0, time_s / EVALS_PER_RUN) if time_s else None,
    )
    TrainConfig(**{k: v for k, v in options.explicit().items() if k != "model"})
    return options


def chars_seen(rows: list[dict], tokens_per_char: float) -> list[tuple[float, float]]:
    """(characters seen, validation bpc) of each metrics row: tokens turned into characters, so
    that runs with different tokenizers share an axis."""
    return [(r["tokens"] / tokens_per_char, r["val_bpc"]) for r in rows]


@dataclass
class Candidate:
    """One run of a comparison: a model and tokenizer from scratch, or a fine-tune of a base
    (a run, a pretrained model's folder or hub id; `base_name`, its short name) (with `as_is`:
    the base as it is, `--steps 0`)."""

    model: str
    tokenizer: str
    base: str | None = None
    as_is: bool = False
    base_name: str = ""

    @property
    def label(self) -> str:
        if self.base is None:
            return f"{self.model} {self.tokenizer}"
        return f"{self.base_name} as it is" if self.as_is else f"from {self.base_name}"

    def options(self, shared: TrainOptions) -> TrainOptions:
        """The comparison's options as this run takes them."""
        if self.base is None:
            return replace(shared, model=self.model)
        return replace(shared, steps=0) if self.as_is else shared

    def run_name(self, corpus: str) -> str:
        if self.base is None:
            return f"{corpus}-compare-{self.model}-{self.tokenizer}"
        return f"{corpus}-compare-{self.base_name}" + ("-as-is" if self.as_is else "-tuned")


def _base_name_and_kind(ref: str, checkpoints_dir: Path) -> tuple[str, str]:
    """The short name and tokenizer kind of a base, known before anything trains: a run's from
    its config.json (its weights are not read here), a pretrained model's by opening it (so a
    missing one is refused now, and a hub model is in the cache for its fine-tune)."""
    if not is_hf_folder(Path(ref)):
        with contextlib.suppress(DataError):
            path = resolve_run(ref, checkpoints_dir)
            return path.name, read_config(path)["tokenizer"]["kind"]
    base = open_base(ref, checkpoints_dir)
    return base.name, base.config["tokenizer"]["kind"]


def compare_models(
    corpora_dir: Path,
    checkpoints_dir: Path,
    corpus: str,
    models: list[str],
    tokenizers: list[str],
    options: TrainOptions,
    *,
    bases: tuple[str, ...] = (),
    samples: int = 5,
    length: int = 1000,
    force: bool = False,
    callback: Callback | None = None,
    on_start: Callable[[int, int, str], None] | None = None,
) -> tuple[list[dict], Path]:
    """Train every model x tokenizer on `corpus` with the same `options` (see `budget`), and
    for each of `bases` (runs, pretrained models) a fine-tune of it with that budget and the
    base as it is; judge each, draw the chart; returns the leaderboard rows (best first) and the
    chart's path.

    Runs are named CORPUS-compare-MODEL-TOKENIZER, CORPUS-compare-BASE-tuned and
    CORPUS-compare-BASE-as-is; existing ones are replaced only with `force`.
    `on_start(i, total, label)` is called before each run.

    Raises:
        UsageError: when a run of the comparison exists already and `force` is not set.
        DataError, SourceError: when a base cannot be opened (before anything is trained).
    """
    check_name(corpus, "corpus")
    combos = [Candidate(m, t) for m in models for t in tokenizers]
    for ref in bases:
        name, kind = _base_name_and_kind(ref, checkpoints_dir)
        for as_is in (False, True):
            combos.append(Candidate("", kind, ref, as_is=as_is, base_name=name))
    existing = [
        c.run_name(corpus)
        for c in combos
        if (Path(checkpoints_dir) / c.run_name(corpus) / CONFIG).exists()
    ]
    if existing and not force:
        raise UsageError(
            f"runs from an earlier comparison exist ({', '.join(existing)}); add --force to "
            "replace them"
        )
    device = resolve_device(options.device)
    rows, curves = [], []
    candidates, author = None, None
    for i, combo in enumerate(combos):
        if on_start:
            on_start(i, len(combos), combo.label)
        result = train_corpus(
            corpora_dir,
            checkpoints_dir,
            corpus,
            combo.options(options),
            run_name=combo.run_name(corpus),
            force=True,
            callback=callback,
            tokenizer_config=TokenizerConfig(kind=combo.tokenizer) if combo.base is None else None,
            base=combo.base,
        )
        run = load_run(result.run_dir, device)
        if candidates is None:
            candidates, author = style_candidates(run.config, corpora_dir)
            heldout, training = own_texts(run.config, corpora_dir)
        model = run.config["model"]["model"]
        row = {
            "run": result.run_dir.name,
            "model": model if combo.base is None else f"{model} {combo.label}",
            "tokenizer": combo.tokenizer,
            "base": combo.base,
            "val_bpc": round(result.best_val_bpc, 4),
            "val_loss": round(result.best_val_loss, 4),
            # with the run's n-gram counts mixed in (two-fold); None for --no-ngrams runs
            "mixed_val_bpc": (
                round(bits(result.mixed_val_loss), 4) if result.mixed_val_loss is not None else None
            ),
            "params": result.params,
            "steps": result.steps,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "time_s": round(result.elapsed_s, 1),
        }
        if samples:
            # --any-words: how well each model spells on its own is part of the comparison
            config = SampleConfig(length=length, n=samples, known_words=False)
            seeds = list(range(samples))
            report = sample_report(
                run, config, seeds, device, candidates, author, heldout, training
            )
            style = report["style"]
            row.update(
                {
                    "realism": report["realism"],
                    "originality": report["originality"],
                    "invented_words": report["invented_words"],
                    "distinct_2": report["distinct"]["distinct_2"],
                    "style_delta": style["delta"][author] if style and author else None,
                    "style_rank": style["rank"] if style else None,
                    "style": style["summary"] if style else None,
                }
            )
        rows.append(row)
        per_char = run.config.get("tokenizer", {}).get("tokens_per_char") or 1.0
        # the base as it is: one point, at no characters seen, where its fine-tune starts
        curves.append((combo.label, chars_seen(read_metrics(result.run_dir), per_char)))
    chart = Path(checkpoints_dir) / f"{corpus}-compare.png"
    compare_chart(curves, chart, f"{corpus}: same split, seed and budget")
    rows.sort(key=lambda r: r["val_bpc"])
    return rows, chart
