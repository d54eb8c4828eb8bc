"""Low-rank adapters (LoRA, Hu et al. 2021): fine-tune a transformer by training, beside each
frozen linear layer W of its blocks, two small matrices A (r x in) and B (out x r), so that the
layer computes W x + s B A x (s = `SCALE`). B starts at zero: training starts from the model
as it is. Everything else (embedding, norms, output layer) stays frozen.

A step then keeps no gradients and no AdamW moments for the frozen weights (16 bytes a weight
become 4), and skips their weight gradients. The run's best weights are saved merged
(W + s B A), so a fine-tune with adapters is read, generated from and served as any run; its
`last/` state keeps them apart, so `--resume` goes on bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from authorgen.errors import UsageError

SCALE = 2.0  # alpha / rank, as the usual alpha 16 at rank 8


class LoRALinear(nn.Module):
    """A frozen linear layer (`base`) and its trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.base = base
        base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear's weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + SCALE * F.linear(F.linear(x, self.lora_a), self.lora_b)


def add_adapters(model: nn.Module, rank: int) -> int:
    """Freeze `model` (a transformer) and put adapters of `rank` beside its blocks' linear
    layers; returns the number of weights trained.

    Raises:
        UsageError: for a recurrent network.
    """
    if not hasattr(model, "blocks"):
        raise UsageError("--lora adapts a transformer's layers; a recurrent network has none")
    model.requires_grad_(False)
    for block in model.blocks:
        for parent in (block.attention, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, LoRALinear(child, rank))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merged(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with adapters (`X.base.weight`, `X.lora_a`, `X.lora_b`) as the plain
    model's (`X.weight` = W + s B A); one without them as it is."""
    out = {}
    for key, tensor in state.items():
        if key.endswith((".lora_a", ".lora_b")):
            continue
        if ".base." in key and key.rsplit(".base.", 1)[0] + ".lora_a" in state:
            layer, kind = key.rsplit(".base.", 1)
            if kind == "weight":
                update = state[layer + ".lora_b"].float() @ state[layer + ".lora_a"].float()
                tensor = (tensor.float() + SCALE * update).to(tensor.dtype)
            out[f"{layer}.{kind}"] = tensor
        else:
            out[key] = tensor
    return out
