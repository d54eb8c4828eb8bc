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
and the command line decides how to draw it. It knows nothing of corpora either: `train`
prepares the data and the model and hands them over.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from authorgen import checkpoint, distributed
from authorgen.callbacks import Callback
from authorgen.checkpoint import RunRecord
from authorgen.config import TrainConfig
from authorgen.data import StreamBatches, random_windows
from authorgen.devices import autocast, autocast_dtype, state_to
from authorgen.errors import AuthorgenError, Interrupted
from authorgen.losses import bits, in_order, validation_loss
from authorgen.models.rnn import detach_state
from authorgen.optim import learning_rate, make_optimizer
from authorgen.prepare import RunData

READ_EVERY = 20  # on a GPU, steps between reads of the loss on the host


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
    mixed_val_loss: float | None = None  # with the n-gram counts (ngrams.py), two-fold


class Diverged(AuthorgenError):
    """The loss or the gradient stopped being finite."""


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


class Trainer:
    """The loop, one step, and the state that makes a run resumable.

    Args:
        model: the network, on its device, with fresh (or pretrained-embedding) weights.
        data: the tokenizer and token ids (`prepare.prepare_data`).
        config: how to train.
        run_dir: the run folder.
        record: the run's config.json, written when the run starts and kept up to date.
        index_sources: the corpus as `(label, text part)` pairs, when the run keeps an
            originality index of it.
        callback: where progress goes.
        group: the torchrun process group, if any; rank 0 alone writes.
        clock: seconds from any start, for the time budget and tokens per second (tests give
            one they control).
        read_every: on a GPU (the default there: 20), read the loss on the host only every
            this many steps: each read waits for the device, which a small model on a fast
            GPU feels. The check that the loss and the gradient are finite stays on the
            device meanwhile, and a non-finite one makes AdamW skip that step and every step
            after it, so the weights stay as they were before it. None or 1: every step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: RunData,
        config: TrainConfig,
        run_dir: Path,
        record: RunRecord,
        *,
        index_sources=None,
        callback: Callback | None = None,
        group: distributed.Group | None = None,
        clock: Callable[[], float] = time.monotonic,
        read_every: int | None = None,
    ):
        self.model, self.data, self.config, self.record = model, data, config, record
        self.clock = clock
        self.run_dir, self.callback = Path(run_dir), callback or Callback()
        self.index_sources = index_sources
        self.group = group or distributed.Group()
        self.device = next(model.parameters()).device
        self.amp = autocast_dtype(config.precision, self.device)
        self.batch_rng = torch.Generator().manual_seed(config.seed)  # batch positions
        # Each process takes its own rows of one global batch, so N processes see what one
        # process with N times the batch would.
        rank, world = self.group.rank, self.group.world
        self.rows = slice(rank * config.batch_size, (rank + 1) * config.batch_size)
        self.streams = (
            StreamBatches(data.train.ids, config.batch_size * world, config.context, self.batch_rng)
            if config.batching == "stream"
            else None
        )
        # the model as the training step calls it: itself, wrapped for DDP, or compiled
        self.training_model = model
        if self.group.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.training_model = DistributedDataParallel(model, device_ids=ids)
        if config.compile:
            self.training_model = torch.compile(self.training_model)
        if read_every is None:
            read_every = READ_EVERY if self.device.type == "cuda" else 1
        # DDP reads every step: the processes agree on the time budget through the host
        self.read_every = 1 if self.group.active else read_every
        self.optimizer = make_optimizer(
            model, config, self.device, fused=True if self.read_every > 1 else None
        )
        # Non-finite watch (no float64: Apple's GPUs have none): 1 from the first bad step on
        self.bad = torch.zeros((), device=self.device)
        self.bad_step = torch.zeros((), dtype=torch.int64, device=self.device)  # its number
        self.bad_at = torch.zeros(2, device=self.device)  # its value, whether the loss was finite
        self.last_loss = math.nan  # the last loss read on the host, for progress reports
        self.step = self.tokens = 0
        self.best, self.best_step, self.last_eval_step = math.inf, 0, -1
        self.best_probabilities = None  # of the validation tokens, by the best weights
        self.evals_since_best = 0
        self.losses: list[float] = []
        self.carried = None  # recurrent state carried from one stream batch to the next
        self.elapsed = self.train_time = self.last_eval_s = 0.0  # seconds, before this process
        self.start = 0.0
        self.progress_now = 0.0  # the fraction of the budget used, agreed by all processes

    @property
    def stateful(self) -> bool:
        return self.streams is not None and self.model.stateful

    def _clock(self) -> float:
        """Seconds of training so far, across interruptions."""
        return self.elapsed + self.clock() - self.start

    def _local_progress(self) -> float:
        """The fraction of the budget used: steps or time, whichever is further along."""
        config = self.config
        by_steps = self.step / config.steps if config.steps else float(config.steps == 0)
        by_time = self._clock() / config.time_s if config.time_s else 0.0
        return max(by_steps, by_time)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows of the next batch: inputs x (B, T) and targets y (B, T)."""
        if self.streams is None:
            rows = self.config.batch_size * self.group.world
            x, y = random_windows(self.data.train.ids, rows, self.config.context, self.batch_rng)
        else:
            x, y, reset = self.streams.next()
            if reset:
                self.carried = None
        return x[self.rows], y[self.rows]

    def train_step(self) -> torch.Tensor:
        """One optimizer step; returns the batch loss in nats per token, on the device.

        Raises:
            Diverged: when the loss or the gradient is not finite (read at once unless the
                trainer reads every few steps; see `read_every`); the weights are untouched.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step, self.progress_now)
        x, y = self._batch()
        if self.device.type == "cuda":  # copied while the GPU still works on the last step
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        carried = self.carried if self.stateful else None
        with autocast(self.amp, self.device):
            logits, state = self.training_model(x, carried)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The gradient is averaged over the processes first, so all of them agree here.
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        loss = loss.detach()
        if self.read_every > 1:
            self._watch(loss, norm)
        else:
            value, norm = loss.item(), float(norm)
            if not (math.isfinite(value) and math.isfinite(norm)):
                bad = value if not math.isfinite(value) else norm
                raise self._diverged(self.step + 1, bad, math.isfinite(value))
        self.optimizer.step()
        if self.stateful:
            self.carried = detach_state(state)
        self.step += 1
        self.tokens += x.numel() * self.group.world
        self.losses.append(loss)
        return loss

    def _watch(self, loss: torch.Tensor, norm: torch.Tensor) -> None:
        """Mark the first non-finite step on the device, and have AdamW skip it and the rest."""
        loss_ok = torch.isfinite(loss)
        finite = loss_ok & torch.isfinite(norm)
        first = ~finite & (self.bad == 0)
        value = torch.where(loss_ok, norm, loss).float()
        self.bad_at = torch.where(first, torch.stack([value, loss_ok.float()]), self.bad_at)
        step = torch.full_like(self.bad_step, self.step + 1)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad = torch.where(finite, self.bad, torch.ones_like(self.bad))
        self.optimizer.found_inf = self.bad

    def _read(self, loss: torch.Tensor) -> float:
        """The loss on the host (a wait for the device).

        Raises:
            Diverged: when a step since the last read was not finite; the state goes back to
                the step before it (AdamW skipped that step and the rest).
        """
        if self.read_every > 1 and self.bad.item():
            step, (value, loss_finite) = self.bad_step.item(), self.bad_at.tolist()
            skipped = self.step - (int(step) - 1)
            self.tokens -= skipped * self.config.batch_size * self.config.context
            self.step -= skipped
            self.losses = self.losses[: max(0, len(self.losses) - skipped)]
            raise self._diverged(int(step), value, bool(loss_finite))
        self.last_loss = loss.item()
        return self.last_loss

    def _diverged(self, step: int, value: float, loss_finite: bool) -> Diverged:
        what = f"gradient became {value}" if loss_finite else f"loss became {value}"
        return Diverged(
            f"the {what} at step {step}; the state before it is saved in {self.run_dir}. "
            f"Lower --lr (now {self.config.lr:g}) and train again"
        )

    def _host_losses(self) -> list[float]:
        """The batch losses since the last evaluation, as numbers (one wait for the device)."""
        if not self.losses:
            return []
        return torch.stack([torch.as_tensor(v) for v in self.losses]).tolist()

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
            "carried": state_to(self.carried, "cpu"),
            "losses": self._host_losses(),
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
            self.carried = state_to(state["carried"], self.device)
        elif not same_rows:
            self.callback.on_message(
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
        val_ids, val_chars = self.data.val.ids, self.data.val.predicted_chars
        # each token's probability, kept for the n-gram counts' fit after training (in fp32
        # only: they must be what the saved weights give)
        kept = [] if self.config.ngrams and self.amp is None and self.group.main else None
        with autocast(self.amp, self.device):
            val = validation_loss(self.model, val_ids, val_chars, self.device, kept)
        losses = self._host_losses()
        per_char = self.data.chars_per_token
        row = {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(self._clock(), 3),
            "train_loss": sum(losses) / len(losses) / per_char if losses else None,
            "val_loss": val,
            "val_bpc": bits(val),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        self.losses, self.last_eval_step, self.last_eval_s = [], self.step, self._clock()
        if val < self.best:
            self.best, self.best_step, self.evals_since_best = val, self.step, 0
            self.best_probabilities = in_order(kept, val_ids) if kept is not None else None
            if self.group.main:
                checkpoint.save_weights(self.run_dir, self.model)
                self.record.best = {"step": self.step, "val_loss": val, "val_bpc": bits(val)}
                checkpoint.save_config(self.run_dir, self.record)
        else:
            self.evals_since_best += 1
        if self.group.main:
            # the row first: a run killed between the two redoes this evaluation on resume
            checkpoint.append_metrics(self.run_dir, row)
            self.save_state()
        self.callback.on_eval(row)
        return row

    def _save_on_failure(self, status: str) -> None:
        self.save_state()
        if self.group.main:
            if self.best == math.inf:  # nothing saved yet: keep these weights usable
                checkpoint.save_weights(self.run_dir, self.model)
            self.record.status = status
            checkpoint.save_config(self.run_dir, self.record)
        self.callback.on_end(status)

    def _loop(self) -> str:
        """Steps until the budget is used or patience runs out; returns how it ended."""
        while self.progress_now < 1.0:
            t0 = self.clock()
            loss = self.train_step()
            self.train_time += self.clock() - t0
            due = self._clock() - self.last_eval_s >= self.config.eval_every_s
            evaluating = self.step % self.config.eval_every == 0 or due
            if self.read_every == 1:
                loss, self.progress_now, due = self.group.mean(
                    [self._read(loss), self._local_progress(), float(due)]
                )
                evaluating = self.step % self.config.eval_every == 0 or due > 0
            else:  # alone: the progress is this process's own, and the loss is read seldom
                self.progress_now = self._local_progress()
                if evaluating or self.progress_now >= 1.0 or self.step % self.read_every == 0:
                    self._read(loss)
            speed = self.tokens / self.train_time if self.train_time else 0.0  # a coarse clock
            self.callback.on_step(self.step, self.last_loss, self.progress_now, speed)
            if evaluating:
                self.evaluate()
                if self.config.patience and self.evals_since_best >= self.config.patience:
                    self.callback.on_message(
                        f"stopped early: no better validation loss in {self.config.patience} "
                        f"evaluations since step {self.best_step:,} (--patience)"
                    )
                    return "stopped early"
        if self.last_eval_step != self.step:
            self.evaluate()
        return "finished"

    def run(self) -> TrainResult:
        """Train to the end of the budget (or until --patience runs out), validating every
        `eval_every` steps, every `eval_every_s` seconds and at the end.

        Raises:
            Interrupted: on Ctrl-C or SIGTERM, after saving the latest state.
            Diverged: when the loss stops being finite, after saving the state before it.
        """
        if self.group.main:
            checkpoint.start_run(self.run_dir, self.data.tokenizer, self.record, self.index_sources)
        self.callback.on_start({**self.record.to_dict(), "run_dir": str(self.run_dir)})
        in_main = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) if in_main else None
        self.model.train()
        self.start = self.clock()
        self.progress_now = self._local_progress()
        try:
            status = self._loop()
            elapsed = self._clock()
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
        self.record.status = status
        self.record.result = {
            "steps": self.step,
            "tokens": self.tokens,
            "elapsed_s": round(elapsed, 3),
            "tokens_per_s": round(speed, 1),
        }
        if self.group.main:
            checkpoint.save_config(self.run_dir, self.record)
        self.callback.on_end(status)
        return TrainResult(
            self.run_dir,
            self.step,
            self.tokens,
            elapsed,
            speed,
            self.record.params,
            self.best_step,
            self.best,
            bits(self.best),
            status,
        )
