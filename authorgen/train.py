"""Training a run, as `authorgen train` does: open the corpus, split it, choose sizes
(`plan`), prepare the data (`prepare`), build the model, write the run folder's first files
(`checkpoint`) and hand everything to the loop (`trainer`), with the steps around it: loss.png
redrawn after each evaluation (`LossChart`), and when the loop ends the training text's n-gram
counts kept in the run and mixed with its best weights (`keep_ngrams`). `resume` does the same
from a run's own record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from authorgen import checkpoint, distributed, lora, plan
from authorgen.base import Base
from authorgen.callbacks import Callback, Callbacks
from authorgen.checkpoint import RunRecord
from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig, TrainOptions
from authorgen.corpus import Corpus, Split, split_corpus
from authorgen.devices import check_precision, cpu_has_bf16, free_memory, resolve_device
from authorgen.errors import DataError, Interrupted, UsageError, first_line
from authorgen.files import cache_dir, existing_dir, utc_now
from authorgen.models import build_model, count_parameters
from authorgen.prepare import prepare_data
from authorgen.pretrained import open_base, reopen_base
from authorgen.run_folder import create_run, finish_create, mapped_dir
from authorgen.tokenizer import Tokenizer
from authorgen.trainer import Trainer, TrainResult
from authorgen.vectors import vector_dim

CHART_EVERY_S = 30.0  # loss.png is redrawn at most this often while training


def build_trainer(
    split: Split,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: Path,
    *,
    run_info: dict | None = None,
    callback: Callback | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    tokenizer: Tokenizer | None = None,
    cache: Path | None = None,
    group: distributed.Group | None = None,
    clock: Callable[[], float] = time.monotonic,
    read_every: int | None = None,
    base: Base | None = None,
) -> Trainer:
    """A `Trainer` for a fresh model on `split.train`, validating on `split.val`, that will
    write its run into the folder `run_dir`; or, given a `base` run, for a model holding the
    base's weights (with `tokenizer` the base's, or that plus new characters: `Base`).

    The tokenizer (`tokenizer`, else char unless `tokenizer_config` says otherwise) is trained
    on `split.train`; it and the token ids are cached under `cache` (default: the user's cache
    folder). `run_info` goes into the data section of the record (corpus, works, plan);
    `clock` is what the time budget is measured with; `read_every`, how often the loss is read
    on the host (`Trainer`).

    Raises:
        DataError: when the text is too short for the context.
        UsageError: for a device, precision or word-vector file that cannot be used.
    """
    callback = callback or Callback()
    group = group or distributed.Group()
    tokenizer_config = tokenizer_config or TokenizerConfig()
    device = resolve_device(train_config.device, group.local_rank)
    torch.manual_seed(train_config.seed)  # weights and dropout
    data = prepare_data(
        split,
        tokenizer_config,
        train_config,
        model_config,
        cache=cache,
        tokenizer=tokenizer,
        group=group,
        report=callback.on_message,
    )
    model_config = replace(model_config, vocab_size=data.tokenizer.vocab_size)
    if model_config.model == "transformer":
        model_config = replace(model_config, context=train_config.context)
    model = build_model(model_config)
    if data.vectors is not None:
        data.vectors.copy_into(model.embedding)
    if base is not None:
        base.load_into(model, data.tokenizer)
        callback.on_message(base.describe(data.tokenizer))
        base.weights.clear()  # the model has them: no second copy through training
    if train_config.lora:
        trained = lora.add_adapters(model, train_config.lora)
        callback.on_message(
            f"low-rank adapters of rank {train_config.lora}: {trained:,} weights trained, the "
            "others frozen"
        )
    model.to(device)
    amp = check_precision(model, train_config.precision, device)
    params = count_parameters(model)
    warning = plan.overfit_warning(params, len(data.train.ids), base is not None)
    record = RunRecord(
        name=Path(run_dir).name,
        created=utc_now(),
        model=model_config,
        tokenizer=data.tokenizer_record(tokenizer_config),
        train=train_config,
        data={**(run_info or {}), **data.sizes_record(split)},
        pretrained_embeddings=data.vectors.to_dict() if data.vectors else None,
        seed=train_config.seed,
        device=str(device),
        precision="bf16" if amp else "fp32",
        threads=torch.get_num_threads(),
        processes=group.world,
        params=params,
        warnings=[warning] if warning else [],
        base=base.lineage(data.tokenizer) if base is not None else None,
    )
    return Trainer(
        model,
        data,
        train_config,
        run_dir,
        record,
        index_sources=split.sources() if train_config.index else None,
        callback=Callbacks(callback, LossChart(run_dir, callback.on_message))
        if group.main
        else callback,
        group=group,
        clock=clock,
        read_every=read_every,
    )


def train(
    split: Split,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: Path,
    **options,
) -> TrainResult:
    """Train a fresh model on `split` into `run_dir` (see `build_trainer` for the options).

    Raises:
        DataError: when the text is too short for the context.
        Interrupted: on Ctrl-C or SIGTERM, after saving the latest state.
        Diverged: when the loss stops being finite.
    """
    return run_trainer(build_trainer(split, model_config, train_config, run_dir, **options))


class LossChart(Callback):
    """Redraws loss.png in the run: after the first evaluation, then at most every
    `CHART_EVERY_S` (a drawing costs about 0.3 s), and when the loop ends. A picture that
    cannot be drawn is a warning, never a lost run."""

    def __init__(
        self,
        run_dir: Path,
        report: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.run_dir, self.report, self.clock, self.failed = Path(run_dir), report, clock, False
        self.drawn: float | None = None  # when last drawn (by `clock`)
        self.behind = False  # rows were logged since

    def on_eval(self, row: dict) -> None:
        self.behind = True
        if self.drawn is None or self.clock() - self.drawn >= CHART_EVERY_S:
            self._draw()

    def on_end(self, status: str) -> None:
        if self.behind:
            self._draw()

    def _draw(self) -> None:
        self.drawn, self.behind = self.clock(), False
        if self.failed:
            return
        try:
            checkpoint.save_chart(self.run_dir)
        except Exception as exc:  # matplotlib can fail in many ways; the run must go on
            self.report(f"warning: loss.png not drawn ({first_line(exc)})")
            self.failed = True


def run_trainer(trainer: Trainer) -> TrainResult:
    """Train to the end of the budget, then (rank 0) keep the n-gram counts (`keep_ngrams`).

    Raises:
        Interrupted: on Ctrl-C or SIGTERM (the state is saved first).
        Diverged: when the loss stops being finite.
    """
    result = trainer.run()
    if not trainer.group.main:
        return result
    try:
        mixed = keep_ngrams(trainer)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while counting n-grams: {trainer.run_dir.name} is trained and saved, "
            "and generates with its model alone"
        ) from None
    if mixed is None:
        return result
    trainer.record.result["mixed_val_loss"] = mixed
    checkpoint.save_config(trainer.run_dir, trainer.record)
    return replace(result, mixed_val_loss=mixed)


def keep_ngrams(trainer: Trainer) -> float | None:
    """Count the training text's n-grams into the run and fit how much the best weights'
    predictions and the counts each weigh (`ngrams.py`); the mixed validation loss (two-fold),
    or None where the run keeps no counts."""
    from authorgen.losses import token_probabilities
    from authorgen.ngrams import MAX_TOKENS, NGrams

    train_ids, val_ids = trainer.data.train.ids, trainer.data.val.ids
    if not trainer.config.ngrams or len(val_ids) < 3:
        return None
    if len(train_ids) > MAX_TOKENS:
        trainer.callback.on_message(
            f"n-gram counts left out: {len(train_ids):,} training tokens is more than "
            f"{MAX_TOKENS:,}"
        )
        return None
    counts = NGrams.count(train_ids, trainer.record.model.vocab_size)
    probs = trainer.best_probabilities  # kept when the best weights were evaluated, in fp32
    if probs is None:
        model = checkpoint.load_run(trainer.run_dir, trainer.device).model  # the best weights
        probs = token_probabilities(model, val_ids, trainer.device)
    mixed = counts.fit(probs, val_ids, trainer.data.val.predicted_chars)["val_loss"]
    counts.save(mapped_dir(trainer.run_dir, trainer.record.maps, "ngrams"))
    return mixed


def train_corpus(
    corpora_dir: Path,
    checkpoints_dir: Path,
    corpus_name: str,
    options: TrainOptions,
    *,
    run_name: str | None = None,
    preset: str | None = None,
    force: bool = False,
    holdout: str | None = None,
    callback: Callback | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    base: str | None = None,
) -> TrainResult:
    """Split corpus `corpus_name`, size a model for it (`plan.choose`: the `options` set win),
    create run `run_name` (default CORPUS-MODEL[-TOKENIZER]) and train it (see `train`).

    With `base` (a run's name or folder) the run is a fine-tune of that run instead: its
    architecture, tokenizer and weights, planned by `Base.plan` (default name CORPUS-from-BASE);
    `tokenizer_config` is then the base's.

    Under torchrun every process calls this; rank 0 alone creates and writes the run.
    A run that fails before its first checkpoint is removed again (and a run it was to replace
    comes back), so a failed command leaves no half-made run behind.
    """
    if options.lora and base is None:
        raise UsageError("--lora adapts trained weights: give the model to adapt with --from")
    if options.steps == 0 and base is None:
        raise UsageError(
            "--steps 0 trains nothing: it makes a run of a base as it is, with --from RUN"
        )
    start = open_base(base, checkpoints_dir) if base is not None else None
    if start is not None:
        start.check(options, preset)
        tokenizer_config = start.tokenizer_config
    tokenizer_config = tokenizer_config or TokenizerConfig()
    if options.pretrained_embeddings and options.embedding_dim is None:
        # the embedding takes the vectors' size unless told otherwise
        options = replace(options, embedding_dim=vector_dim(options.pretrained_embeddings))
    corpus = Corpus.open(corpora_dir, corpus_name)
    split = split_corpus(corpus, holdout)
    device = resolve_device(options.device)
    group = distributed.setup(device.type)
    if start is not None:
        chosen = start.plan(options, device.type)
        tokenizer = start.tokenizer_for(split)
        run_name = run_name or f"{corpus_name}-from-{start.name}"
    else:
        chosen = choose_sizes(
            split.train_chars, tokenizer_config, device, options, preset, group, callback
        )
        tokenizer, kind = None, tokenizer_config.kind
        run_name = run_name or "-".join(
            [corpus_name, chosen.model.model] + ([kind] if kind != "char" else [])
        )
    run_dir, replaced = group.main_first(
        lambda: create_run(checkpoints_dir, run_name, force=force),
        lambda: (Path(checkpoints_dir) / run_name, None),
    )
    info = {
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256(),
        "works": [w["id"] for w in corpus.works],
        "holdout": holdout,
        "plan": chosen.reasons,
        "probe": chosen.speeds,
    }
    try:
        return train(
            split,
            chosen.model,
            chosen.train,
            run_dir,
            run_info=info,
            callback=callback,
            tokenizer_config=tokenizer_config,
            tokenizer=tokenizer,
            group=group,
            base=start,
        )
    finally:
        if group.main:
            finish_create(run_dir, replaced)
        distributed.teardown()


def choose_sizes(
    train_chars: int,
    tokenizer: TokenizerConfig,
    device: torch.device,
    options: TrainOptions,
    preset: str | None = None,
    group: distributed.Group | None = None,
    callback: Callback | None = None,
) -> plan.Plan:
    """`plan.choose`, with this machine's measured speed (`probe`) where it could change the
    plan; under torchrun rank 0 measures and every process plans from its numbers."""
    group = group or distributed.Group()
    chosen = plan.choose(train_chars, tokenizer.kind, device.type, options, preset)
    if not plan.wants_speeds(chosen, options, device.type, cpu_has_bf16(), preset):
        return chosen
    speeds = group.shared(lambda: _probe(tokenizer, device, callback))
    return plan.choose(
        train_chars,
        tokenizer.kind,
        device.type,
        options,
        preset,
        speeds=speeds,
        memory=free_memory(device),
    )


def _probe(tokenizer: TokenizerConfig, device: torch.device, callback: Callback | None) -> dict:
    """The training speed of the CPU plan's candidates on this machine (`probe`)."""
    from authorgen import probe
    from authorgen.config import ModelConfig

    shapes = plan.probe_shapes(tokenizer.kind, tokenizer.vocab_size)
    candidates = {
        name: (ModelConfig(**model), batch, context)
        for name, (model, batch, context) in shapes.items()
    }
    t0 = time.monotonic()
    speeds, measured = probe.speeds(candidates, device, cpu_has_bf16(), cache_dir())
    if measured and callback is not None:
        callback.on_message(
            f"measured this machine's training speed in {time.monotonic() - t0:.1f} s "
            "(kept in the cache for next time)"
        )
    return speeds


def resume(
    corpora_dir: Path,
    checkpoints_dir: Path,
    run_ref: str,
    *,
    device: str | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Continue run `run_ref` from its `last/` state to the end of its planned budget, with its
    own settings, tokenizer and data split.

    Raises:
        DataError: when the run or its corpus is missing, or the corpus changed since.
        UsageError: when the run has already finished.
    """
    run_dir = checkpoint.resolve_run(run_ref, checkpoints_dir)
    config = checkpoint.read_config(run_dir)
    if config.get("status") in ("finished", "stopped early"):
        steps = (config.get("result") or {}).get("steps", "?")
        raise UsageError(
            f"run {run_dir.name} has already {config['status']} (step {steps}); there is "
            "nothing to resume. Train a new run to go further"
        )
    checkpoint.remove_leftovers(run_dir)
    data = config.get("data", {})
    corpus = Corpus.open(corpora_dir, data.get("corpus", "?"))
    if corpus.sha256() != data.get("corpus_sha256"):
        raise DataError(
            f"corpus {corpus.name!r} has changed since run {run_dir.name} started; "
            "resume needs the same text (train a new run instead)"
        )
    split = split_corpus(corpus, data.get("holdout"))
    train_config = TrainConfig.from_dict(config["train"])
    if device is not None:
        train_config = replace(train_config, device=device)
    group = distributed.setup(resolve_device(train_config.device).type)
    tokenizer = dict(config["tokenizer"])
    tokenizer["vocab_size"] = tokenizer.get("requested_vocab_size")
    base = None  # a fine-tune stopped before its first state starts from its base again
    if config.get("base") and existing_dir(run_dir / "last") is None:
        base = reopen_base(config["base"], checkpoints_dir)
    try:
        trainer = build_trainer(
            split,
            ModelConfig.from_dict(config["model"]),
            train_config,
            run_dir,
            run_info=data,
            callback=callback,
            tokenizer_config=TokenizerConfig.from_dict(tokenizer),
            tokenizer=checkpoint.load_tokenizer(run_dir),
            group=group,
            base=base,
        )
        record = trainer.record
        record.created = config.get("created", record.created)
        record.base = config.get("base")
        record.maps = config.get("maps") or {}  # {}: a run made before maps were named
        resumed = trainer.restore()
        record.best = config.get("best") if resumed else None
        record.resumed = [*config.get("resumed", []), {"at": utc_now(), "step": trainer.step}]
        trainer.callback.on_message(
            f"resuming {run_dir.name} at step {trainer.step:,}"
            + (f" ({trainer.elapsed:.0f} s of its budget used)" if resumed else " (no state yet)")
        )
        return run_trainer(trainer)
    finally:
        distributed.teardown()
