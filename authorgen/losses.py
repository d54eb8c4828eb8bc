"""Losses in nats per character of the original text.

Per character, not per token, so models with different tokenizers compare: a word model's
loss per token is divided by the characters its tokens spell. Bits per character = nats / ln 2.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from authorgen.data import IGNORE, eval_streams


def _streamed(model, ids, device: torch.device, n_streams: int):
    """The text as `n_streams` contiguous streams fed `model.eval_chunk` tokens at a time, the
    state carried along: (logits (S, w, V), targets (S, w)) per chunk. An RNN predicts each
    token from everything before it in its stream, a transformer from the `context - 1` tokens
    before it at most (its KV cache slides)."""
    state = None
    for x, y in eval_streams(ids, n_streams, model.eval_chunk):
        logits, state = model(x.to(device), state)
        yield logits, y.to(device)


@torch.no_grad()
def total_nll(
    model, ids: torch.Tensor, device: torch.device, n_streams: int = 64
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every token of `ids` after the first, and its
    count (the streams of `_streamed`)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for logits, y in _streamed(model, ids, device, n_streams):
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


@torch.no_grad()
def token_probabilities(model, ids, device: torch.device, n_streams: int = 64) -> np.ndarray:
    """The model's probability of each token of `ids` after the first, in order, from the same
    streams as `total_nll` (so the mean of their -log is its loss). For an evaluation mode
    model."""
    chunks = []
    for logits, y in _streamed(model, ids, device, n_streams):
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, y.clamp(min=0)[..., None])
        chunks.append(logp[..., 0].exp().double().cpu().numpy())  # (S, w)
    # row r of the streams holds the predictions of input positions r * L .. (r + 1) * L - 1
    return np.concatenate(chunks, axis=1).reshape(-1)[: len(ids) - 1]


def validation_loss(model, ids: torch.Tensor, chars: int, device: torch.device) -> float:
    """Nats per character: the NLL of `ids[1:]` over the `chars` characters those tokens spell."""
    total, _ = total_nll(model, ids, device)
    return total / chars


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / math.log(2)
