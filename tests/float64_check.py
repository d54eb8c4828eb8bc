"""A device without float64 (Apple's MPS), as far as a CPU can show it.

`NoFloat64OnDevice` is a torch function mode that follows what is on the model's device:
the weights and buffers of every model built (`watch`), and every tensor an operation makes
from such a tensor. A copy to the host (`.cpu()`, `.to("cpu")`, `.numpy()`, `.tolist()`,
`.item()`) leaves the device, as it would on a real accelerator, even though on the CPU it
is the same memory. An operation that would make a float64 tensor on the device is recorded
(`found`): on MPS it would raise. A conversion that moves and widens at once
(`.to("cpu", torch.float64)`) counts as made on the device, since where the conversion
happens is the backend's choice.

What it cannot see, a static check covers: a float64 tensor created with a `device=` that is
not the literal "cpu" (`created_on_a_device`).
"""

from __future__ import annotations

import ast
import weakref
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map_only

_HOST = {torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.item}


def _device_of(value) -> str | None:
    if isinstance(value, torch.device):
        return value.type
    if isinstance(value, str):
        return torch.device(value).type
    return None


def _to_host(func, args, kwargs) -> bool:
    """Whether the call copies its tensor to the host (and changes nothing else)."""
    if func in _HOST:
        return True
    if func is not torch.Tensor.to:
        return False
    rest = list(args[1:]) + list(kwargs.values())
    devices = [_device_of(v) for v in rest if isinstance(v, (str, torch.device))]
    widens = any(v is torch.float64 for v in rest)
    return devices == ["cpu"] and not widens


class NoFloat64OnDevice(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.on_device: dict[int, weakref.ref] = {}
        self.found: list[str] = []

    def _has(self, tensor: torch.Tensor) -> bool:
        ref = self.on_device.get(id(tensor))
        return ref is not None and ref() is tensor

    def _add(self, tensor: torch.Tensor) -> None:
        self.on_device[id(tensor)] = weakref.ref(tensor)

    def watch(self, model: torch.nn.Module) -> torch.nn.Module:
        for tensor in [*model.parameters(), *model.buffers()]:
            self._add(tensor)
            if tensor.dtype == torch.float64:
                self.found.append(f"a float64 weight or buffer of {type(model).__name__}")
        return model

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if not any(self._has(t) for t in inputs):
            return out
        if _to_host(func, args, kwargs):  # a new tensor on the host, whatever the CPU shares
            return tree_map_only(torch.Tensor, lambda t: t.view_as(t) if self._has(t) else t, out)
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                if tensor.dtype == torch.float64:
                    self.found.append(getattr(func, "__qualname__", repr(func)))
                self._add(tensor)
        return out


_FACTORIES = {"zeros", "ones", "full", "empty", "arange", "tensor", "rand", "randn", "linspace"}


def created_on_a_device(folder: Path) -> list[str]:
    """`file:line` of each torch factory call with dtype float64 and a `device=` that is not
    the literal "cpu" (no device: the CPU)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in _FACTORIES:
                continue
            words = {k.arg: k.value for k in node.keywords}
            dtype, device = words.get("dtype"), words.get("device")
            wide = isinstance(dtype, ast.Attribute) and dtype.attr in ("float64", "double")
            on_cpu = device is None or (isinstance(device, ast.Constant) and device.value == "cpu")
            if wide and not on_cpu:
                found.append(f"{path.name}:{node.lineno}")
    return found
