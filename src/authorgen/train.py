"""The training loop: AdamW, warmup + cosine schedule fitted to the budget, gradient clipping,
periodic validation in nats per character, best and last states saved in the run directory.

The loop knows nothing of the screen: it reports through a `Callback` (minGPT's trainer hook),
and the command line decides how to draw it.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from authorgen import checkpoint
from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig
from authorgen.corpus import Corpus, Split, split_corpus
from authorgen.data import (
    StreamBatches,
    TokenIds,
    encode_split,
    prepare_tokenizer,
    random_windows,
)
from authorgen.errors import AuthorgenError, DataError, Interrupted, UsageError
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
        """A note while preparing (tokenizer, token ids, word vectors)."""


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


def resolve_device(name: str) -> torch.device:
    """ "auto" is CUDA when available, else the CPU.

    Raises:
        UsageError: when CUDA is asked for and not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    return torch.device(name)


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over `warmup_steps` times a cosine from 1 to `min_lr_ratio` over the budget."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    floor = config.min_lr_ratio
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * warmup * cosine


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """AdamW; weight decay only on weight matrices, never on biases or embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = param.dim() >= 2 and not name.startswith("embedding")
        (decay if is_matrix else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=device.type == "cuda")


def _since(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


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
    ):
        cfg = self.cfg = train_config
        self.run_dir, self.cb = Path(run_dir), callback or Callback()
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)  # weights and dropout
        self.batch_rng = torch.Generator().manual_seed(cfg.seed)  # batch positions

        tokenizer_config = tokenizer_config or TokenizerConfig()
        if cfg.pretrained_embeddings:  # fail before a long tokenizer training
            require_word_tokenizer(tokenizer_config.kind)
            vector_dim(cfg.pretrained_embeddings)
        self.tokenizer, train, val = self._prepare_tokens(split, tokenizer_config, cache)
        self.train_ids, self.val_ids = train.ids, val.ids
        self._check_sizes()
        # Losses are per character of the original text, whatever a token is (DESIGN.md).
        self.val_chars = val.predicted_chars
        self.chars_per_token = train.chars / len(train.ids)
        self.streams = (
            StreamBatches(self.train_ids, cfg.batch_size, cfg.context, self.batch_rng)
            if cfg.batching == "stream"
            else None
        )

        model_config = replace(model_config, vocab_size=self.tokenizer.vocab_size)
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
            "params": count_parameters(self.model),
            "best": None,
        }
        self.step = self.tokens = 0
        self.best, self.best_step, self.last_eval_step = math.inf, 0, -1
        self.losses: list[float] = []
        self.carried = None  # recurrent state carried from one stream batch to the next
        self.start = self.train_time = 0.0

    def _prepare_tokens(
        self, split: Split, tokenizer_config: TokenizerConfig, cache: Path | None
    ) -> tuple[Tokenizer, TokenIds, TokenIds]:
        """The tokenizer and both halves' ids, from the cache or made (and said so)."""
        cache = Path(cache) if cache is not None else cache_dir()
        t0 = time.monotonic()
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
        if cfg.batching == "stream" and n <= cfg.batch_size * (cfg.context + 1):
            raise DataError(
                f"the training text has {n:,} tokens, too few for --batch-size "
                f"{cfg.batch_size} streams of --context {cfg.context}; lower either"
            )
        if len(self.val_ids) < 2:
            raise DataError("the validation text is empty; add works to the corpus")

    def progress(self) -> float:
        """The fraction of the budget used: steps or time, whichever is further along."""
        cfg = self.cfg
        by_steps = self.step / cfg.steps if cfg.steps else 0.0
        by_time = (time.monotonic() - self.start) / cfg.time_s if cfg.time_s else 0.0
        return max(by_steps, by_time)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.streams is None:
            return random_windows(
                self.train_ids, self.cfg.batch_size, self.cfg.context, self.batch_rng
            )
        x, y, reset = self.streams.next()
        if reset:
            self.carried = None
        return x, y

    def train_step(self) -> float:
        """One optimizer step; returns the batch loss in nats per token."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step, self.progress())
        x, y = self._batch()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        logits, state = self.model(x, self.carried)
        if self.streams is not None:
            self.carried = detach_state(state)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            raise AuthorgenError(
                f"the loss became {value} at step {self.step + 1}; the saved states are from "
                f"before it. Lower --lr (now {self.cfg.lr:g}) and train again"
            )
        self.step += 1
        self.tokens += x.numel()
        self.losses.append(value)
        return value

    def save_state(self) -> None:
        checkpoint.save_last(
            self.run_dir,
            self.model,
            {
                "step": self.step,
                "tokens": self.tokens,
                "elapsed_s": time.monotonic() - self.start,
                "optimizer": self.optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "batch_rng": self.batch_rng.get_state(),
                "streams": self.streams.state_dict() if self.streams else None,
            },
        )

    def evaluate(self) -> dict:
        """Validate, keep the best weights, save the latest state, log a metrics row."""
        val = validation_loss(self.model, self.val_ids, self.val_chars, self.device)
        losses = self.losses
        row = {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(time.monotonic() - self.start, 3),
            "train_loss": sum(losses) / len(losses) / self.chars_per_token if losses else None,
            "val_loss": val,
            "val_bpc": bits(val),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        self.losses, self.last_eval_step = [], self.step
        if val < self.best:
            self.best, self.best_step = val, self.step
            checkpoint.save_weights(self.run_dir, self.model)
            self.config["best"] = {"step": self.step, "val_loss": val, "val_bpc": bits(val)}
            checkpoint.save_config(self.run_dir, self.config)
        self.save_state()
        checkpoint.append_metrics(self.run_dir, row)
        self.cb.on_eval(row)
        return row

    def run(self) -> TrainResult:
        """Train to the end of the budget, validating every `eval_every` steps and at the end.

        Raises:
            Interrupted: on Ctrl-C or SIGTERM, after saving the latest state.
            AuthorgenError: when the loss stops being finite.
        """
        self.tokenizer.save(self.run_dir)
        checkpoint.save_config(self.run_dir, self.config)
        self.cb.on_start({**self.config, "run_dir": str(self.run_dir)})
        in_main = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) if in_main else None
        self.model.train()
        self.start = time.monotonic()
        try:
            while self.progress() < 1.0:
                t0 = time.monotonic()
                loss = self.train_step()
                self.train_time += time.monotonic() - t0
                self.cb.on_step(self.step, loss, self.progress(), self.tokens / self.train_time)
                if self.step % self.cfg.eval_every == 0:
                    self.evaluate()
            if self.last_eval_step != self.step:
                self.evaluate()
        except KeyboardInterrupt:
            self.save_state()
            if self.best == math.inf:  # nothing saved yet: keep these weights usable
                checkpoint.save_weights(self.run_dir, self.model)
            self.config["status"] = "interrupted"
            checkpoint.save_config(self.run_dir, self.config)
            raise Interrupted(
                f"training interrupted at step {self.step}; the state is saved in {self.run_dir}"
            ) from None
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, old_handler)
        elapsed = time.monotonic() - self.start
        speed = self.tokens / self.train_time
        self.config["status"] = "finished"
        self.config["result"] = {
            "steps": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(elapsed, 3),
            "tokens_per_s": round(speed, 1),
        }
        checkpoint.save_config(self.run_dir, self.config)
        return TrainResult(
            self.run_dir,
            self.step,
            self.tokens,
            elapsed,
            speed,
            self.config["params"],
            self.best_step,
            self.best,
            bits(self.best),
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
        AuthorgenError: when the loss stops being finite.
    """
    return Trainer(
        split, model_config, train_config, run_dir, run_info, callback, tokenizer_config, cache
    ).run()


def train_corpus(
    corpora_dir: Path,
    checkpoints_dir: Path,
    corpus_name: str,
    run_name: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    force: bool = False,
    holdout: str | None = None,
    callback: Callback | None = None,
    tokenizer_config: TokenizerConfig | None = None,
) -> TrainResult:
    """Split corpus `corpus_name`, create run `run_name` and train it (see `train`).

    A run that fails before its first checkpoint is removed again (and a run it was to replace
    comes back), so a failed command leaves no half-made run behind.
    """
    corpus = Corpus.open(corpora_dir, corpus_name)
    split = split_corpus(corpus, holdout)
    run_dir, replaced = checkpoint.create_run(checkpoints_dir, run_name, force=force)
    info = {
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256(),
        "works": [w["id"] for w in corpus.works],
    }
    try:
        return train(split, model_config, train_config, run_dir, info, callback, tokenizer_config)
    finally:
        checkpoint.finish_create(run_dir, replaced)
