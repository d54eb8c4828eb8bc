"""The training loop's hooks (minGPT's trainer callback): the loop knows nothing of the screen
or of the files drawn around it; `cli.console` draws progress, `train.LossChart` the chart.
"""

from __future__ import annotations


class Callback:
    """Hooks the loop calls; override what you need. All run in the training process; the
    loop's own work (validation, saving) is done before each."""

    def on_start(self, info: dict) -> None:
        """Once, before the first step: run, device, parameters, split sizes, budget."""

    def on_step(self, step: int, loss: float, progress: float, tokens_per_s: float) -> None:
        """After each optimizer step; `progress` is the fraction of the budget used (0..1)."""

    def on_eval(self, row: dict) -> None:
        """After each evaluation, with the row written to metrics.jsonl."""

    def on_message(self, text: str) -> None:
        """A note while preparing (plan, tokenizer, token ids, word vectors) or stopping."""

    def on_end(self, status: str) -> None:
        """Once, when the loop ends and its state is saved: finished, stopped early,
        interrupted or diverged."""


class Callbacks(Callback):
    """Several callbacks called in turn: what the user sees, and steps such as the chart."""

    def __init__(self, *callbacks: Callback):
        self.callbacks = callbacks

    def on_start(self, info: dict) -> None:
        for callback in self.callbacks:
            callback.on_start(info)

    def on_step(self, step: int, loss: float, progress: float, tokens_per_s: float) -> None:
        for callback in self.callbacks:
            callback.on_step(step, loss, progress, tokens_per_s)

    def on_eval(self, row: dict) -> None:
        for callback in self.callbacks:
            callback.on_eval(row)

    def on_message(self, text: str) -> None:
        for callback in self.callbacks:
            callback.on_message(text)

    def on_end(self, status: str) -> None:
        for callback in self.callbacks:
            callback.on_end(status)
