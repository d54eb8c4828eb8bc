"""Losses in nats per character of the original text.

Per character, not per token, so models with different tokenizers compare: a word model's
loss per token is divided by the characters its tokens spell. Bits per character = nats / ln 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from authorgen.data import IGNORE, eval_streams


@torch.no_grad()
def total_nll(
    model, ids: torch.Tensor, device: torch.device, n_streams: int = 64
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every token of `ids` after the first, and its count.

    The text runs as `n_streams` contiguous streams fed `model.eval_chunk` tokens at a time, the
    state carried along: an RNN predicts each token from everything before it in its stream, a
    transformer from the `context - 1` tokens before it at most (its KV cache slides).
    """
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        for x, y in eval_streams(ids, n_streams, model.eval_chunk):
            x, y = x.to(device), y.to(device)
            logits, state = model(x, state)  # (S, w, V)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                y.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            ).item()
            count += int((y != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


def validation_loss(model, ids: torch.Tensor, chars: int, device: torch.device) -> float:
    """Nats per character: the NLL of `ids[1:]` over the `chars` characters those tokens spell."""
    total, _ = total_nll(model, ids, device)
    return total / chars


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / math.log(2)
