"""A public pretrained model as the base of a fine-tune (`train CORPUS --from MODEL`): where it
comes from (a Hugging Face folder, a run or the hub: `open_base`), the plan of its fine-tune and
the memory that needs (`PretrainedBase`). Reading the model itself is `families.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from pathlib import Path

import torch

from authorgen.base import Base
from authorgen.config import ModelConfig, TrainConfig, TrainOptions
from authorgen.devices import cpu_has_bf16, free_memory
from authorgen.errors import DataError, UsageError
from authorgen.families import (
    is_hf_folder,
    map_weights,
    model_config,
    read_hf_config,
    read_hf_weights,
)
from authorgen.files import slugify
from authorgen.plan import Plan, activation_bytes

# A fine-tune of a pretrained model, unless options say otherwise: provisional choices (not yet
# measured against each other on these models): a short context and a small batch for a CPU,
# AdamW at a peak of 1e-4 after a short warmup, as small models are commonly fine-tuned.
FINETUNE = {"context": 256, "batch_size": 8, "lr": 1e-4, "warmup_steps": 20, "weight_decay": 0.0}
LORA_RANK = 8  # adapters, when training every weight would not fit in memory
# What a fine-tune's process holds beside its weights' state and activations (PyTorch, the
# data, the bf16 copies of the weights), per weight: the peaks measured at 124M and 135M
# weights less the rest of the estimate came to about 1 GiB at both sizes
PROGRAM_BYTES_PER_WEIGHT = 8


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB"


def open_base(ref: str, checkpoints_dir: Path) -> Base:
    """What `train --from REF` starts from: a Hugging Face model folder, a run, or a model on
    the hub by id (`hub.py`).

    Raises:
        DataError: when it is missing or damaged.
        SourceError: when it is not in the cache and the hub cannot be reached.
        UsageError: when it cannot be a base.
    """
    from authorgen.hub import HUB_ID

    if is_hf_folder(Path(ref)):
        return PretrainedBase.open(ref)
    try:
        return Base.open(ref, checkpoints_dir)
    except DataError as exc:
        if "/" not in ref and not (checkpoints_dir / ref).exists():
            raise DataError(
                f"{exc}; a model on the hub is OWNER/NAME, as openai-community/gpt2"
            ) from None
        if not HUB_ID.match(ref) or Path(ref).exists():
            raise
    try:
        return PretrainedBase.open(ref)
    except DataError as exc:
        raise DataError(f"no run named {ref!r} in {checkpoints_dir}, and {exc}") from None


def reopen_base(lineage: dict, checkpoints_dir: Path) -> Base:
    """The base a fine-tune's `lineage` names, as it was when the fine-tune began."""
    kind = PretrainedBase if lineage.get("pretrained") else Base
    return kind.reopen(lineage, checkpoints_dir)


class PretrainedBase(Base):
    """A public pretrained model as the base of a fine-tune (`train CORPUS --from MODEL`)."""

    @classmethod
    def open_lineage(cls, lineage: dict, checkpoints_dir: Path) -> PretrainedBase:
        known = lineage["pretrained"]  # the hub's model at the revision downloaded, or a folder
        revision = known["revision"] if known.get("hub") else None
        return cls.open(known["source"], checkpoints_dir, revision=revision)

    @classmethod
    def open(
        cls, ref: str, checkpoints_dir: Path | None = None, *, revision: str | None = None
    ) -> PretrainedBase:
        """The model of the Hugging Face folder `ref`, or of the hub's model `ref` (at
        `revision`, default its latest), with its own tokenizer (`checkpoints_dir` unused:
        a run's).

        Raises:
            DataError: when a file is missing or damaged, or the hub has no such model.
            SourceError: when the hub cannot be reached and the cache lacks the model.
            UsageError: when the architecture or its tokenizer is not supported.
        """
        from authorgen import hub
        from authorgen.tokenizer.pretrained import PretrainedTokenizer

        on_hub = not Path(ref).is_dir()
        folder = hub.download(ref, revision) if on_hub else Path(ref)
        hf = read_hf_config(folder)
        model = model_config(hf)
        try:
            data = (folder / "tokenizer.json").read_bytes()
        except OSError:
            raise DataError(
                f"{folder} has no tokenizer.json; the model's tokenizer is needed"
            ) from None
        tokenizer = PretrainedTokenizer(data, model.vocab_size)
        weights = map_weights(hf, read_hf_weights(folder))
        config = {
            "model": model.to_dict(),
            "tokenizer": {"kind": "pretrained", "requested_vocab_size": None},
            "pretrained": {
                "id": ref if on_hub else (hf.get("_name_or_path") or folder.name),
                "hub": on_hub,
                "source": ref if on_hub else str(folder.resolve()),
                "family": hf["model_type"],
                "revision": folder.name if on_hub else None,  # the snapshot's commit
                "licence": hub.licence(folder),
            },
        }
        return cls(folder, config, tokenizer, weights)

    @property
    def name(self) -> str:
        return slugify(str(self.config["pretrained"]["id"]).split("/")[-1]) or "pretrained"

    def describe(self, tokenizer) -> str:
        params = sum(t.numel() for t in self.weights.values())
        return (
            f"from {self.name}: a pretrained {self.config['pretrained']['family']} model "
            f"({params / 1e6:.0f}M weights) and its tokenizer ({tokenizer.vocab_size:,} tokens)"
        )

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.run_dir.glob("*.safetensors")):
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def plan(self, options: TrainOptions, device_type: str) -> Plan:
        asked = options.explicit()
        model = self.model_config
        if "dropout" in asked:
            model = replace(model, dropout=asked["dropout"])
        train = dict(FINETUNE)
        train["context"] = min(asked.get("context", train["context"]), model.context)
        if asked.get("precision") == "auto":  # what the command line passes when not given
            asked.pop("precision")
        if device_type == "cpu" and "precision" not in asked and cpu_has_bf16():
            train["precision"] = "bf16"
        names = {f.name for f in fields(TrainConfig)}
        train.update({k: v for k, v in asked.items() if k in names and k != "context"})
        train_config = TrainConfig(**train)
        reasons = [
            f"fine-tuning the pretrained {self.name}: its architecture and tokenizer, context "
            f"{train_config.context} (the model reads up to {model.context}), batch "
            f"{train_config.batch_size}, learning rate {train_config.lr:g} after "
            f"{train_config.warmup_steps} warmup steps (provisional: not yet measured)"
        ]
        free = free_memory(torch.device(device_type))
        needed = self.memory(model, train_config)
        if free is not None and sum(needed) > free and "lora" not in asked:
            adapted = replace(train_config, lora=LORA_RANK)
            if sum(self.memory(model, adapted)) <= free:
                reasons.append(
                    f"low-rank adapters of rank {LORA_RANK}: training every weight needs about "
                    f"{_mib(sum(needed))}, more than the {_mib(free)} free"
                )
                train_config, needed = adapted, self.memory(model, adapted)
        if free is not None and sum(needed) > free:
            kept, activations, program = needed
            raise UsageError(
                f"fine-tuning {self.name} needs about {_mib(sum(needed))} ({_mib(kept)} "
                f"for its weights{' and adapters' if train_config.lora else ''}, their "
                f"gradients and AdamW's moments, {_mib(activations)} for batch "
                f"{train_config.batch_size} x context {train_config.context}, "
                f"{_mib(program)} for the program) and {_mib(free)} is free; lower "
                "--batch-size or --context, or close other programs"
            )
        return Plan(model, train_config, reasons)

    def memory(self, model: ModelConfig, train: TrainConfig) -> tuple[int, int, int]:
        """About how many bytes a fine-tune keeps for its weights (fp32; with their gradients
        and AdamW's two moments where trained), for its activations, and for the program
        (PyTorch, the data, the weights' bf16 copies: `PROGRAM_BYTES_PER_WEIGHT`).

        Against the peaks measured at GPT-2's and SmolLM2's sizes in bf16 (benchmarks/README.md)
        it is 11% under to 19% over; without the program's share it was up to 35% under."""
        params = sum(t.numel() for t in self.weights.values())
        shape = {f: getattr(model, f) for f in ("model", "embedding_dim", "layers", "heads")}
        shape.update(mlp_dim=model.mlp_dim, context=train.context, batch_size=train.batch_size)
        activations = activation_bytes(shape, model.vocab_size)
        program = PROGRAM_BYTES_PER_WEIGHT * params
        if not train.lora:
            return 16 * params, activations, program
        e, mlp, layers = model.embedding_dim, model.mlp_dim, model.layers
        kv = (model.variant or {}).get("kv_heads") or model.heads
        sides = [e + e + 2 * kv * e // model.heads, 2 * e, e + mlp, e + mlp]  # in + out
        if (model.variant or {}).get("mlp") == "swiglu":
            sides.append(e + mlp)
        adapters = layers * train.lora * sum(sides)
        return 4 * params + 16 * adapters, activations, program

    def lineage(self, tokenizer) -> dict:
        return {
            "name": self.name,
            "pretrained": self.config["pretrained"],
            "weights_sha256": self.weights_sha256(),
            "added_tokens": 0,
            "added_chars": "",
        }
