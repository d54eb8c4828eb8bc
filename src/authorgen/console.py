"""Everything the user sees besides data: a rich console on stderr and the training progress.

stdout is for data only (generated text). Colour follows rich's rules (NO_COLOR is honoured);
nothing animates when stderr is not a terminal; --quiet silences it all but errors.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class TrainProgress:
    """The training loop's callback (see `authorgen.train.Callback`): a bar on a terminal,
    and one line per evaluation everywhere."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None
        self.task = None
        self.val: float | None = None
        self.smooth: float | None = None  # moving average of the step loss, for display

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_start(self, info: dict) -> None:
        m, t, d = info["model"], info["train"], info["data"]
        budget = " and ".join(
            part
            for part in (
                f"{t['steps']:,} steps" if t["steps"] else "",
                _duration(t["time_s"]) if t["time_s"] else "",
            )
            if part
        )
        self.console.print(
            f"run [bold]{info['name']}[/] -> {info['run_dir']}\n"
            f"  model {m['model']} {m['layers']}x{m['hidden']} (embedding {m['embedding_dim']}, "
            f"dropout {m['dropout']}), {info['params']:,} parameters, vocabulary "
            f"{m['vocab_size']}, device {info['device']}\n"
            f"  data {d['train_chars']:,} training / {d['val_chars']:,} validation characters "
            f"({d['split']})\n"
            f"  budget {budget}; context {t['context']}, batch {t['batch_size']}, "
            f"lr {t['lr']:g}, seed {info['seed']}"
        )
        if self.console.is_terminal and not self.console.quiet:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.progress.add_task("starting", total=1.0)
            self.progress.start()

    def on_step(self, step: int, loss: float, progress: float, tokens_per_s: float) -> None:
        if self.progress is None:
            return
        self.smooth = loss if self.smooth is None else 0.98 * self.smooth + 0.02 * loss
        val = f"val {self.val:.3f}" if self.val is not None else "val -"
        self.progress.update(
            self.task,
            completed=min(progress, 1.0),
            description=f"step {step:,}  loss {self.smooth:.3f}  {val}  {tokens_per_s:,.0f} tok/s",
        )

    def on_eval(self, row: dict) -> None:
        self.val = row["val_loss"]
        train = f"{row['train_loss']:.3f}" if row["train_loss"] is not None else "-"
        self.console.print(
            f"step {row['step']:>6,}  train {train}  val {row['val_loss']:.4f} nats/char "
            f"({row['val_bpc']:.4f} bpc)  lr {row['lr']:.2e}  {_duration(row['elapsed_s'])}"
        )
