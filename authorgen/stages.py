"""A score stage: one step that turns a batch of next-token scores (B, V) into new scores,
given what each sample wrote (`history`). The stages, in their order, are in `penalties.py`
(those that read what was written) and `samplers.py` (those that shape the distribution).

A stage is a dataclass: its fields are its settings, checked when it is built (ValueError), so
a caller that skips `SampleConfig` cannot pass a value that would quietly do something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import torch

NEG_INF = float("-inf")
History = Sequence[Sequence[int]]  # each sample's token ids so far, prompt included


def require(ok: bool, what: str, value) -> None:
    if not ok:
        raise ValueError(f"{what} (got {value!r})")


def ban(scores: torch.Tensor, row: int, ids: Sequence[int]) -> torch.Tensor:
    """`scores` (B, V) with the `ids` of sample `row` at -inf (a copy when any is banned)."""
    if len(ids):
        scores = scores.clone()
        scores[row, torch.as_tensor(ids, dtype=torch.long, device=scores.device)] = NEG_INF
    return scores


class Stage:
    """One stage of the scores: `stage(scores (B, V), history) -> scores (B, V)`."""

    reads_history = False  # looks at what each sample wrote: run per job
    pointwise = True  # a token's new score depends on its own score only

    def settings(self) -> tuple:
        """What makes two stages of a kind give the same scores (the dataclass's init fields)."""
        return (type(self).__name__, *(getattr(self, f.name) for f in fields(self) if f.init))

    def __call__(self, scores: torch.Tensor, history: History) -> torch.Tensor:
        raise NotImplementedError
