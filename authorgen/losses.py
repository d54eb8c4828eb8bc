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

# The most logits one forward pass of validation holds: 64 streams of 128 tokens over GPT-2's
# 50,257 tokens would take 1.6 GB (and as much again for the loss), more than its fine-tune's
# training step. Past this, the streams are fed in groups, each with its own state.
EVAL_LOGITS_BYTES = 256 << 20


def _streamed(model, ids, device: torch.device, n_streams: int):
    """The text as `n_streams` contiguous streams fed `model.eval_chunk` tokens at a time, the
    state carried along: (chunk number, logits (s, w, V), targets (s, w)) for each group of s
    streams of each chunk, in order. An RNN predicts each token from everything before it in
    its stream, a transformer from the `context - 1` tokens before it at most (its KV cache
    slides). Streams are independent, so groups give every stream the numbers it would have
    in one batch."""
    per_stream = 4 * model.eval_chunk * model.config.vocab_size
    group = max(1, EVAL_LOGITS_BYTES // per_stream)
    states = {}
    for chunk, (x, y) in enumerate(eval_streams(ids, n_streams, model.eval_chunk)):
        for start in range(0, x.shape[0], group):
            rows = slice(start, start + group)
            logits, states[start] = model(x[rows].to(device), states.get(start))
            yield chunk, logits, y[rows].to(device)


@torch.no_grad()
def total_nll(
    model,
    ids: torch.Tensor,
    device: torch.device,
    n_streams: int = 64,
    probabilities: list | None = None,
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every token of `ids` after the first, and its
    count (the streams of `_streamed`). Given a list, `probabilities` also gets each chunk's
    probabilities of its tokens (`in_order` puts them in the text's order)."""
    was_training = model.training
    model.eval()
    total, count, chunks = 0.0, 0, []
    try:
        for chunk, logits, y in _streamed(model, ids, device, n_streams):
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                y.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            ).item()
            count += int((y != IGNORE).sum())
            if probabilities is not None:
                _append(chunks, chunk, _chunk_probabilities(logits, y))
    finally:
        model.train(was_training)
    if probabilities is not None:
        probabilities.extend(chunks)
    return total, count


def _append(chunks: list[np.ndarray], chunk: int, group: np.ndarray) -> None:
    """Put a group's probabilities (s, w) below the others of its chunk in `chunks`."""
    if chunk == len(chunks):
        chunks.append(group)
    else:
        chunks[chunk] = np.concatenate((chunks[chunk], group))


def _chunk_probabilities(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, y.clamp(min=0)[..., None])
    return logp[..., 0].exp().cpu().double().numpy()  # (S, w); float64 on the host


def in_order(chunks: list[np.ndarray], ids) -> np.ndarray:
    """The probabilities of the tokens of `ids` after the first, in order, from its chunks."""
    # row r of the streams holds the predictions of input positions r * L .. (r + 1) * L - 1
    return np.concatenate(chunks, axis=1).reshape(-1)[: len(ids) - 1]


@torch.no_grad()
def token_probabilities(model, ids, device: torch.device, n_streams: int = 64) -> np.ndarray:
    """The model's probability of each token of `ids` after the first, in order, from the same
    streams as `total_nll` (so the mean of their -log is its loss). For an evaluation mode
    model."""
    chunks = []
    for chunk, logits, y in _streamed(model, ids, device, n_streams):
        _append(chunks, chunk, _chunk_probabilities(logits, y))
    return in_order(chunks, ids)


def validation_loss(
    model, ids: torch.Tensor, chars: int, device: torch.device, probabilities: list | None = None
) -> float:
    """Nats per character: the NLL of `ids[1:]` over the `chars` characters those tokens spell
    (`probabilities`: see `total_nll`)."""
    total, _ = total_nll(model, ids, device, probabilities=probabilities)
    return total / chars


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / math.log(2)
