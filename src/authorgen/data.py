"""Batches of token ids for training and evaluation.

Training reads the text in one of two ways, both driven by an explicit `torch.Generator` so a
seed fixes the batches:
- "stream" (stateful truncated BPTT, char-rnn's way): the text is cut into `batch_size`
  contiguous streams read `context` tokens at a time, and the model's state carries over from
  one batch to the next, so every prediction sees a long past;
- "windows": independent windows at uniform random positions, each starting from a zero state.
Evaluation walks the whole text once as parallel contiguous streams, so every token is
predicted exactly once and a recurrent model can carry its state along.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

IGNORE = -100  # target id that cross_entropy skips (padding of the last stream)


def random_windows(
    ids: torch.Tensor, batch_size: int, context: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows of `context + 1` tokens as inputs x (B, T) and targets y (B, T).

    `ids` is a 1-D int64 tensor with more than `context` tokens.
    """
    starts = torch.randint(0, len(ids) - context, (batch_size,), generator=generator)
    windows = ids[starts[:, None] + torch.arange(context + 1)]  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


class StreamBatches:
    """Stateful truncated-BPTT batches: row r of every batch continues row r of the last one.

    Each pass over the text starts at a random offset below `context`, so window boundaries
    move between passes; `reset` is True on the first batch of a pass (drop the carried state).
    """

    def __init__(
        self, ids: torch.Tensor, batch_size: int, context: int, generator: torch.Generator
    ):
        self.ids, self.batch_size, self.context, self.generator = (
            ids,
            batch_size,
            context,
            generator,
        )
        self.length = (len(ids) - 1) // batch_size  # tokens per stream
        if self.length <= context:
            raise ValueError("text too short for batch_size x context")
        self.pos = self.length  # forces a new pass on the first call
        self.offset = 0
        self.passes = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Inputs x (B, T), targets y (B, T), and whether this batch starts a new pass."""
        reset = self.pos + self.context > self.length
        if reset:
            self.offset = int(torch.randint(0, self.context, (1,), generator=self.generator))
            self.pos = self.offset
            self.passes += 1
        starts = torch.arange(self.batch_size) * self.length + self.pos
        windows = self.ids[starts[:, None] + torch.arange(self.context + 1)]  # (B, T + 1)
        self.pos += self.context
        return windows[:, :-1], windows[:, 1:], reset

    def state_dict(self) -> dict:
        return {"pos": self.pos, "offset": self.offset, "passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.offset, self.passes = state["pos"], state["offset"], state["passes"]


def eval_streams(
    ids: torch.Tensor, n_streams: int, context: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The text as `n_streams` contiguous rows, yielded `context` columns at a time.

    Row r holds inputs ids[r*L : (r+1)*L] and their targets one token later, L = ceil((N-1)/S);
    the last row is padded with targets IGNORE. Carry the model state from one chunk to the next.
    """
    inputs, targets = ids[:-1], ids[1:]
    n = len(targets)
    n_streams = max(1, min(n_streams, n))
    length = -(-n // n_streams)
    pad = n_streams * length - n
    if pad:
        inputs = torch.cat([inputs, inputs.new_zeros(pad)])
        targets = torch.cat([targets, targets.new_full((pad,), IGNORE)])
    x_all = inputs.view(n_streams, length)
    y_all = targets.view(n_streams, length)
    for t in range(0, length, context):
        yield x_all[:, t : t + context], y_all[:, t : t + context]
