"""The training loop: AdamW, warmup + cosine schedule fitted to the budget, gradient clipping,
periodic validation in nats per character, best and last states saved in the run directory.

Resuming is exact: `last/` holds the weights, the optimizer, the step, every random generator,
the data cursor and the carried recurrent state, so a run stopped at an evaluation (or by
Ctrl-C/SIGTERM, which save first) and resumed ends with the same weights, bit for bit on a CPU,
as one never stopped. A run killed outright (kill -9) resumes from its last evaluation and
replays the steps since. With a --time budget the schedule follows the clock, so time-limited
runs are not repeatable to the bit even without interruption; resume continues with the time
that was left.

The loop knows nothing of the screen: it reports through a `Callback` (minGPT's trainer hook),
and the command line decides how to draw it.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from authorgen import checkpoint, distributed, plan
from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig
from authorgen.corpus import Corpus, Split, split_corpus
from authorgen.data import (
    StreamBatches,
    TokenIds,
    encode_split,
    prepare_tokenizer,
    random_windows,
)
from authorgen.errors import AuthorgenError, DataError, Interrupted, UsageError, first_line
from authorgen.evaluate import bits, validation_loss
from authorgen.files import cache_dir, utc_now
from authorgen.models import build_model, count_parameters
from authorgen.models.rnn import detach_state
from authorgen.tokenizer import Tokenizer
from authorgen.vectors import read_word_vectors, require_word_tokenizer, vector_dim


class Callback:
    """Hooks the loop calls; override what you need. All run in the training process."""

    def on_start(self, info: dict) -> None:
        """Once, before the first step: run, device, parameters, split sizes, budget."""

    def on_step(self, step: int, loss: float, progress: float, tokens_per_s: float) -> None:
        """After each optimizer step; `progress` is the fraction of the budget used (0..1)."""

    def on_eval(self, row: dict) -> None:
        """After each evaluation, with the row written to metrics.jsonl."""

    def on_message(self, text: str) -> None:
        """A note while preparing (plan, tokenizer, token ids, word vectors) or stopping."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    elapsed_s: float
    tokens_per_s: float
    params: int
    best_step: int
    best_val_loss: float  # nats per character
    best_val_bpc: float
    status: str = "finished"  # finished | stopped early


class Diverged(AuthorgenError):
    """The loss or the gradient stopped being finite."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" is CUDA when available, else the CPU; under torchrun, this process's GPU.

    Raises:
        UsageError: when CUDA is asked for and not there.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over `warmup_steps` times a cosine from 1 to `min_lr_ratio` over the budget."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    floor = config.min_lr_ratio
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * warmup * cosine


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """AdamW; weight decay only on weight matrices, never on norms, biases or embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = param.dim() >= 2 and not name.startswith("embedding")
        (decay if is_matrix else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=device.type == "cuda")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for --precision bf16, or auto on a CUDA GPU that has it; None: plain fp32."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _since(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _to(state, device):
    """A recurrent state (tensor or tuple of tensors) on `device`."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s.to(device) for s in state)
    return state.to(device)


class Trainer:
    """One training run: the data, the model, the optimizer and the loop's bookkeeping."""

    def __init__(
        self,
        split: Split,
        model_config: ModelConfig,
        train_config: TrainConfig,
        run_dir: Path,
        run_info: dict | None = None,
        callback: Callback | None = None,
        tokenizer_config: TokenizerConfig | None = None,
        cache: Path | None = None,
        *,
        tokenizer: Tokenizer | None = None,
        group: distributed.Group | None = None,
    ):
        cfg = self.cfg = train_config
        self.group = group or distributed.Group()
        self.run_dir, self.cb = Path(run_dir), callback or Callback()
        self.split = split  # kept for the originality index the run writes
        self.chart_failed = False
        self.device = resolve_device(cfg.device, self.group.local_rank)
        torch.manual_seed(cfg.seed)  # weights and dropout
        self.batch_rng = torch.Generator().manual_seed(cfg.seed)  # batch positions

        tokenizer_config = tokenizer_config or TokenizerConfig()
        if cfg.pretrained_embeddings:  # fail before a long tokenizer training
            require_word_tokenizer(tokenizer_config.kind)
            vector_dim(cfg.pretrained_embeddings)
        self.tokenizer, train, val = self.group.main_first(
            lambda: self._prepare_tokens(split, tokenizer_config, cache, tokenizer)
        )
        self.train_ids, self.val_ids = train.ids, val.ids
        self._check_sizes()
        # Losses are per character of the original text, whatever a token is (DESIGN.md).
        self.val_chars = val.predicted_chars
        self.chars_per_token = train.chars / len(train.ids)
        # Each process takes its own rows of one global batch, so N processes see what one
        # process with N times the batch would.
        rows = cfg.batch_size * self.group.world
        self.rows = slice(self.group.rank * cfg.batch_size, (self.group.rank + 1) * cfg.batch_size)
        self.streams = (
            StreamBatches(self.train_ids, rows, cfg.context, self.batch_rng)
            if cfg.batching == "stream"
            else None
        )

        model_config = replace(model_config, vocab_size=self.tokenizer.vocab_size)
        if model_config.model == "transformer":
            model_config = replace(model_config, context=cfg.context)
        vectors = None
        if cfg.pretrained_embeddings:
            vectors = read_word_vectors(cfg.pretrained_embeddings, self.tokenizer, self.train_ids)
            if vectors.dim != model_config.embedding_dim:
                raise UsageError(
                    f"the word vectors have {vectors.dim} dimensions but --embedding-dim is "
                    f"{model_config.embedding_dim}; leave --embedding-dim out to fit it"
                )
            self.cb.on_message(vectors.describe())
        self.model = build_model(model_config)
        if vectors is not None:
            vectors.copy_into(self.model.embedding)
        self.model.to(self.device)
        self.net = self.model  # what the training step calls: maybe wrapped, maybe compiled
        if self.group.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.amp = autocast_dtype(cfg.precision, self.device)
        if self.amp is not None:
            self._probe_precision()
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.config = {
            "name": self.run_dir.name,
            "created": utc_now(),
            "status": "training",
            "model": model_config.to_dict(),
            "tokenizer": {
                **tokenizer_config.to_dict(),
                "vocab_size": self.tokenizer.vocab_size,
                "requested_vocab_size": tokenizer_config.vocab_size,
                "tokens_per_char": round(len(train.ids) / train.chars, 6),
            },
            "train": cfg.to_dict(),
            "data": {
                **(run_info or {}),
                "split": split.description,
                "train_chars": train.chars,
                "val_chars": val.chars,
                "train_tokens": len(train.ids),
                "val_tokens": len(val.ids),
                "val_unk_tokens": val.unk,
            },
            "pretrained_embeddings": vectors.to_dict() if vectors else None,
            "seed": cfg.seed,
            "device": str(self.device),
            "precision": "bf16" if self.amp else "fp32",
            "threads": torch.get_num_threads(),
            "processes": self.group.world,
            "params": count_parameters(self.model),
            "best": None,
        }
        warning = plan.overfit_warning(self.config["params"], len(train.ids))
        self.config["warnings"] = [warning] if warning else []
        self.step = self.tokens = 0
        self.best, self.best_step, self.last_eval_step = math.inf, 0, -1
        self.evals_since_best = 0
        self.losses: list[float] = []
        self.carried = None  # recurrent state carried from one stream batch to the next
        self.elapsed = self.train_time = self.last_eval_s = 0.0  # seconds, before this process
        self.start = 0.0
        self.progress_now = 0.0  # the fraction of the budget used, agreed by all processes

    def _probe_precision(self) -> None:
        """Fail now, in one line, when this device has no kernels for the precision asked."""
        try:
            with torch.no_grad(), self._autocast():
                self.model(torch.zeros(1, 2, dtype=torch.long, device=self.device))
        except RuntimeError as exc:
            raise UsageError(
                f"--precision {self.cfg.precision}: this {self.device.type.upper()} cannot run "
                f"the {self.model.config.model} in bf16 ({first_line(exc)[:120]}); "
                "use --precision fp32"
            ) from None

    def _prepare_tokens(
        self,
        split: Split,
        tokenizer_config: TokenizerConfig,
        cache: Path | None,
        tokenizer: Tokenizer | None = None,
    ) -> tuple[Tokenizer, TokenIds, TokenIds]:
        """The tokenizer (given, cached or trained) and both halves' ids, and say so."""
        cache = Path(cache) if cache is not None else cache_dir()
        t0 = time.monotonic()
        if tokenizer is None:
            tokenizer, reused = prepare_tokenizer(split, tokenizer_config, cache)
            self.cb.on_message(
                f"tokenizer {tokenizer_config.kind}: {tokenizer.vocab_size:,} tokens in the "
                + ("vocabulary, from the cache" if reused else f"vocabulary, made in {_since(t0)}")
            )
        t0 = time.monotonic()
        encoded = encode_split(split, tokenizer, cache)
        train, val = encoded.train, encoded.val
        self.cb.on_message(
            f"token ids: {len(train.ids) + len(val.ids):,} for {train.chars + val.chars:,} "
            + ("characters, from the cache" if encoded.reused else f"characters in {_since(t0)}")
            + f" ({encoded.folder})"
        )
        return tokenizer, train, val

    def _check_sizes(self) -> None:
        cfg, n = self.cfg, len(self.train_ids)
        if n <= cfg.context + 1:
            raise DataError(
                f"the training text has {n:,} tokens, too few for --context {cfg.context}; "
                "use a smaller --context or add works to the corpus"
            )
        rows = cfg.batch_size * self.group.world
        if cfg.batching == "stream" and n <= rows * (cfg.context + 1):
            raise DataError(
                f"the training text has {n:,} tokens, too few for {rows} streams "
                f"(--batch-size {cfg.batch_size} x {self.group.world} processes) of --context "
                f"{cfg.context}; lower either"
            )
        if len(self.val_ids) < 2:
            raise DataError("the validation text is empty; add works to the corpus")

    @property
    def stateful(self) -> bool:
        return self.streams is not None and self.model.stateful

    def _clock(self) -> float:
        """Seconds of training so far, across interruptions."""
        return self.elapsed + time.monotonic() - self.start

    def _local_progress(self) -> float:
        """The fraction of the budget used: steps or time, whichever is further along."""
        cfg = self.cfg
        by_steps = self.step / cfg.steps if cfg.steps else 0.0
        by_time = self._clock() / cfg.time_s if cfg.time_s else 0.0
        return max(by_steps, by_time)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.streams is None:
            rows = self.cfg.batch_size * self.group.world
            x, y = random_windows(self.train_ids, rows, self.cfg.context, self.batch_rng)
        else:
            x, y, reset = self.streams.next()
            if reset:
                self.carried = None
        return x[self.rows], y[self.rows]

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def train_step(self) -> float:
        """One optimizer step; returns the batch loss in nats per token.

        Raises:
            Diverged: when the loss or the gradient is not finite; the weights are untouched.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step, self.progress_now)
        x, y = self._batch()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self._autocast():
            logits, state = self.net(x, self.carried if self.stateful else None)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The gradient is averaged over the processes first, so all of them agree here.
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        value = loss.item()
        if not (math.isfinite(value) and math.isfinite(norm)):
            what = f"loss became {value}" if not math.isfinite(value) else f"gradient became {norm}"
            raise Diverged(
                f"the {what} at step {self.step + 1}; the state before it is saved in "
                f"{self.run_dir}. Lower --lr (now {self.cfg.lr:g}) and train again"
            )
        self.optimizer.step()
        if self.stateful:
            self.carried = detach_state(state)
        self.step += 1
        self.tokens += x.numel() * self.group.world
        self.losses.append(value)
        return value

    def state_dict(self) -> dict:
        """Everything besides the weights that the next step depends on."""
        return {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": self._clock(),
            "train_time_s": self.train_time,
            "last_eval_s": self.last_eval_s,
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": (
                torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            ),
            "batch_rng": self.batch_rng.get_state(),
            "streams": self.streams.state_dict() if self.streams else None,
            "carried": _to(self.carried, "cpu"),
            "losses": list(self.losses),
            "best": self.best,
            "best_step": self.best_step,
            "last_eval_step": self.last_eval_step,
            "evals_since_best": self.evals_since_best,
            "processes": self.group.world,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step, self.tokens = state["step"], state["tokens"]
        self.elapsed, self.train_time = state["elapsed_s"], state["train_time_s"]
        self.last_eval_s = state["last_eval_s"]
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.batch_rng.set_state(state["batch_rng"])
        same_rows = state.get("processes", 1) == self.group.world
        if self.streams is not None and state["streams"] is not None and same_rows:
            self.streams.load_state_dict(state["streams"])
            self.carried = _to(state["carried"], self.device)
        elif not same_rows:
            self.cb.on_message(
                f"the run was trained on {state.get('processes', 1)} processes and goes on with "
                f"{self.group.world}: the data order differs from here on (not bit-exact)"
            )
        self.losses = list(state["losses"])
        self.best, self.best_step = state["best"], state["best_step"]
        self.last_eval_step = state["last_eval_step"]
        self.evals_since_best = state["evals_since_best"]

    def restore(self) -> bool:
        """Continue from the run's `last/` state, if it has one (else start afresh).

        Metrics logged after that state are dropped: the steps will be taken again.
        """
        loaded = checkpoint.load_last(self.run_dir, self.model, self.device)
        if loaded is None:
            return False
        self.load_state_dict(loaded)
        if self.group.main:
            checkpoint.truncate_metrics(self.run_dir, self.step)
        return True

    def save_state(self) -> None:
        if self.group.main:
            checkpoint.save_last(self.run_dir, self.model, self.state_dict())

    def evaluate(self) -> dict:
        """Validate, keep the best weights, log a metrics row, save the latest state."""
        with self._autocast():
            val = validation_loss(self.model, self.val_ids, self.val_chars, self.device)
        losses = self.losses
        row = {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(self._clock(), 3),
            "train_loss": sum(losses) / len(losses) / self.chars_per_token if losses else None,
            "val_loss": val,
            "val_bpc": bits(val),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        self.losses, self.last_eval_step, self.last_eval_s = [], self.step, self._clock()
        if val < self.best:
            self.best, self.best_step, self.evals_since_best = val, self.step, 0
            if self.group.main:
                checkpoint.save_weights(self.run_dir, self.model)
                self.config["best"] = {"step": self.step, "val_loss": val, "val_bpc": bits(val)}
                checkpoint.save_config(self.run_dir, self.config)
        else:
            self.evals_since_best += 1
        if self.group.main:
            # the row first: a run killed between the two redoes this evaluation on resume
            checkpoint.append_metrics(self.run_dir, row)
            self.save_state()
            self._draw_chart()
        self.cb.on_eval(row)
        return row

    def _draw_chart(self) -> None:
        """Redraw loss.png; a picture that cannot be drawn is a warning, never a lost run."""
        try:
            checkpoint.save_chart(self.run_dir)
        except Exception as exc:  # matplotlib can fail in many ways; the run must go on
            if not self.chart_failed:
                self.cb.on_message(f"warning: loss.png not drawn ({first_line(exc)})")
            self.chart_failed = True

    def _save_on_failure(self, status: str) -> None:
        self.save_state()
        if self.group.main:
            if self.best == math.inf:  # nothing saved yet: keep these weights usable
                checkpoint.save_weights(self.run_dir, self.model)
            self.config["status"] = status
            checkpoint.save_config(self.run_dir, self.config)

    def run(self) -> TrainResult:
        """Train to the end of the budget (or until --patience runs out), validating every
        `eval_every` steps, every `eval_every_s` seconds and at the end.

        Raises:
            Interrupted: on Ctrl-C or SIGTERM, after saving the latest state.
            Diverged: when the loss stops being finite, after saving the state before it.
        """
        if self.group.main:
            self.tokenizer.save(self.run_dir)
            checkpoint.save_config(self.run_dir, self.config)
            if self.cfg.index:
                checkpoint.save_index(self.run_dir, self.split.sources())
        self.cb.on_start({**self.config, "run_dir": str(self.run_dir)})
        in_main = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) if in_main else None
        self.model.train()
        self.start = time.monotonic()
        self.progress_now = self._local_progress()
        status = "finished"
        try:
            while self.progress_now < 1.0:
                t0 = time.monotonic()
                loss = self.train_step()
                self.train_time += time.monotonic() - t0
                due = self._clock() - self.last_eval_s >= self.cfg.eval_every_s
                loss, self.progress_now, due = self.group.mean(
                    [loss, self._local_progress(), float(due)]
                )
                self.cb.on_step(self.step, loss, self.progress_now, self.tokens / self.train_time)
                if self.step % self.cfg.eval_every == 0 or due > 0:
                    self.evaluate()
                    if self.cfg.patience and self.evals_since_best >= self.cfg.patience:
                        status = "stopped early"
                        self.cb.on_message(
                            f"stopped early: no better validation loss in {self.cfg.patience} "
                            f"evaluations since step {self.best_step:,} (--patience)"
                        )
                        break
            if self.last_eval_step != self.step:
                self.evaluate()
        except KeyboardInterrupt:
            self._save_on_failure("interrupted")
            raise Interrupted(
                f"training interrupted at step {self.step}; the state is saved in "
                f"{self.run_dir}; continue with: authorgen train --resume {self.run_dir.name}"
            ) from None
        except Diverged:
            self._save_on_failure("diverged")
            raise
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, old_handler)
        speed = self.tokens / self.train_time if self.train_time else 0.0
        self.config["status"] = status
        self.config["result"] = {
            "steps": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(self._clock(), 3),
            "tokens_per_s": round(speed, 1),
        }
        if self.group.main:
            checkpoint.save_config(self.run_dir, self.config)
        return TrainResult(
            self.run_dir,
            self.step,
            self.tokens,
            self._clock(),
            speed,
            self.config["params"],
            self.best_step,
            self.best,
            bits(self.best),
            status,
        )


def train(
    split: Split,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: Path,
    run_info: dict | None = None,
    callback: Callback | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    cache: Path | None = None,
) -> TrainResult:
    """Train a fresh model on `split.train`, validating on `split.val`, saving into `run_dir`.

    The tokenizer (char unless `tokenizer_config` says otherwise) is trained on `split.train`;
    it and the token ids are cached under `cache` (default: the user's cache folder).

    Raises:
        DataError: when the text is too short for the context.
        Interrupted: on Ctrl-C or SIGTERM, after saving the latest state.
        Diverged: when the loss stops being finite.
    """
    return Trainer(
        split, model_config, train_config, run_dir, run_info, callback, tokenizer_config, cache
    ).run()


def train_corpus(
    corpora_dir: Path,
    checkpoints_dir: Path,
    corpus_name: str,
    given: dict,
    *,
    run_name: str | None = None,
    preset: str | None = None,
    force: bool = False,
    holdout: str | None = None,
    callback: Callback | None = None,
    tokenizer_config: TokenizerConfig | None = None,
) -> TrainResult:
    """Split corpus `corpus_name`, size a model for it (`plan.choose`: the options in `given`
    win), create run `run_name` (default CORPUS-MODEL[-TOKENIZER]) and train it (see `train`).

    Under torchrun every process calls this; rank 0 alone creates and writes the run.
    A run that fails before its first checkpoint is removed again (and a run it was to replace
    comes back), so a failed command leaves no half-made run behind.
    """
    callback = callback or Callback()
    tokenizer_config = tokenizer_config or TokenizerConfig()
    corpus = Corpus.open(corpora_dir, corpus_name)
    split = split_corpus(corpus, holdout)
    device = resolve_device(given.get("device", "auto"))
    group = distributed.setup(device.type)
    chosen = plan.choose(split.train_chars, tokenizer_config.kind, device.type, given, preset)
    kind = tokenizer_config.kind
    run_name = run_name or "-".join(
        [corpus_name, chosen.model.model] + ([kind] if kind != "char" else [])
    )
    run_dir, replaced = group.main_first(
        lambda: checkpoint.create_run(checkpoints_dir, run_name, force=force),
        lambda: (Path(checkpoints_dir) / run_name, None),
    )
    info = {
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256(),
        "works": [w["id"] for w in corpus.works],
        "holdout": holdout,
        "plan": chosen.reasons,
    }
    try:
        return Trainer(
            split,
            chosen.model,
            chosen.train,
            run_dir,
            info,
            callback,
            tokenizer_config,
            group=group,
        ).run()
    finally:
        if group.main:
            checkpoint.finish_create(run_dir, replaced)
        distributed.teardown()


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
        steps = config.get("result", {}).get("steps", "?")
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
    try:
        trainer = Trainer(
            split,
            ModelConfig.from_dict(config["model"]),
            train_config,
            run_dir,
            data,
            callback,
            TokenizerConfig.from_dict(tokenizer),
            tokenizer=checkpoint.load_tokenizer(run_dir),
            group=group,
        )
        trainer.config["created"] = config.get("created", trainer.config["created"])
        resumed = trainer.restore()
        trainer.config["best"] = config.get("best") if resumed else None
        trainer.config["resumed"] = [
            *config.get("resumed", []),
            {"at": utc_now(), "step": trainer.step},
        ]
        (callback or Callback()).on_message(
            f"resuming {run_dir.name} at step {trainer.step:,}"
            + (f" ({trainer.elapsed:.0f} s of its budget used)" if resumed else " (no state yet)")
        )
        return trainer.run()
    finally:
        distributed.teardown()
