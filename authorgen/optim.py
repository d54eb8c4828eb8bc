"""The optimizer and its schedule: AdamW, linear warmup, then a cosine fitted to the budget."""

from __future__ import annotations

import math

import torch

from authorgen.config import TrainConfig


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over `warmup_steps` times a cosine from 1 to `min_lr_ratio` over the budget."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    floor = config.min_lr_ratio
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * warmup * cosine


def make_optimizer(
    model: torch.nn.Module, config: TrainConfig, device: torch.device, fused: bool | None = None
):
    """AdamW; weight decay only on weight matrices, never on norms, biases or embeddings.
    Fused (one kernel for all weights, and steps skipped on the device) on CUDA unless told."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = param.dim() >= 2 and not name.startswith("embedding")
        (decay if is_matrix else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = device.type == "cuda" if fused is None else fused
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=fused)
