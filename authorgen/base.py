"""Starting a run from another run (`authorgen train CORPUS --from RUN`): a fine-tune.

- **The tokenizer is the base's.** A character base gains the characters the new training text
  has and it lacks, sorted in as every character vocabulary is; their embedding and output rows
  start at the mean of the base's rows, and every other row is the base's own, moved to its new
  id. A subword base keeps its tokenizer as it is: byte fallback spells any character. A word
  base is refused: its vocabulary and its spacing rules were learned from its own text.
- **The architecture is the base's.** An option that contradicts it is refused, one that agrees
  is accepted; dropout may change.
- **The plan is a fine-tune's:** the base's context, batch and precision, a peak learning rate
  `LR_SCALE` times the base's after a short warmup (`WARMUP_STEPS`: the weights are trained
  already), the budget as usual. Lower rates were measured and lost at short budgets, and
  freezing the lower layers bought speed but no better loss (benchmarks/README.md,
  "Fine-tuning from a base").
- **Lineage:** the run's config.json keeps the base's name, corpus and its sha256, its val loss
  and the sha256 of its weights, and how many tokens were added (`Base.lineage`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from authorgen import checkpoint
from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig, TrainOptions
from authorgen.corpus import Split, read_chunks
from authorgen.devices import cpu_has_bf16
from authorgen.errors import DataError, UsageError
from authorgen.plan import Plan
from authorgen.tokenizer import CharTokenizer, Tokenizer

LR_SCALE = 1.0  # the fine-tune's peak learning rate, as a share of the base's
WARMUP_STEPS = 20
# what makes the base's weights fit the model: fixed by the base (ModelConfig fields)
ARCHITECTURE = ("model", "layers", "hidden", "embedding_dim", "heads", "mlp_dim", "tie_weights")
# what the base's training settings give a fine-tune unless an option says otherwise
KEPT = ("context", "batch_size", "batching", "weight_decay", "grad_clip", "min_lr_ratio")


@dataclass
class Base:
    """A run to start from: its folder, config.json, tokenizer and best weights (fp32, CPU)."""

    run_dir: Path
    config: dict
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]

    @classmethod
    def open(cls, ref: str, checkpoints_dir: Path) -> Base:
        """The run `ref` (a name under `checkpoints_dir` or a folder).

        Raises:
            DataError: when there is no such run, or it is damaged.
            UsageError: when it is a word-level run.
        """
        run = checkpoint.load_run(checkpoint.resolve_run(ref, checkpoints_dir))
        if run.tokenizer.kind == "word":
            raise UsageError(
                f"run {run.path.name} reads words: a word vocabulary and its spacing rules "
                "belong to the text they were learned from; start from a char, bpe or unigram run"
            )
        return cls(run.path, run.config, run.tokenizer, run.model.state_dict())

    @classmethod
    def reopen(cls, lineage: dict, checkpoints_dir: Path) -> Base:
        """The base a fine-tune's `lineage` names, as it was when the fine-tune began.

        Raises:
            DataError: when it is gone, or its weights changed since.
        """
        base = cls.open_lineage(lineage, checkpoints_dir)
        if base.weights_sha256() != lineage.get("weights_sha256"):
            raise DataError(
                f"the base {base.name} has other weights than when this run began; "
                "train the run again"
            )
        return base

    @classmethod
    def open_lineage(cls, lineage: dict, checkpoints_dir: Path) -> Base:
        """The base a fine-tune's `lineage` names, as it is now."""
        return cls.open(lineage["name"], checkpoints_dir)

    def describe(self, tokenizer: Tokenizer) -> str:
        """A line on what the fine-tune takes from the base."""
        best, corpus = self.config.get("best") or {}, self.config["data"].get("corpus")
        added = self.added(tokenizer)
        line = (
            f"from {self.name}: its weights (step {best.get('step', 0):,}, val "
            f"{best.get('val_loss', float('nan')):.4f} nats/char on {corpus}) "
            f"and tokenizer ({self.tokenizer.vocab_size:,} tokens)"
        )
        if added:
            shown = "".join(added[:20]) + ("..." if len(added) > 20 else "")
            line += (
                f", plus {len(added)} character{'s' if len(added) > 1 else ''} it lacked "
                f"({shown!r}), their rows starting at the mean of its rows"
            )
        return line

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.config["model"])

    @property
    def tokenizer_config(self) -> TokenizerConfig:
        saved = dict(self.config["tokenizer"])
        saved["vocab_size"] = saved.get("requested_vocab_size")
        return TokenizerConfig.from_dict(saved)

    def weights_sha256(self) -> str:
        return hashlib.sha256((self.run_dir / checkpoint.WEIGHTS).read_bytes()).hexdigest()

    def check(self, options: TrainOptions, preset: str | None = None) -> None:
        """Refuse, in one line, an option that contradicts the base."""
        if preset is not None:
            raise UsageError(
                f"--preset sizes a new model, but the sizes come from the base {self.name}; "
                "leave --preset out"
            )
        model, asked = self.model_config.to_dict(), options.explicit()
        for name in ARCHITECTURE:
            if name in asked and asked[name] != model[name]:
                raise UsageError(
                    f"{_option(name)} {asked[name]} contradicts the base {self.name} "
                    f"({model[name]}): the architecture comes from the base; leave it out"
                )
        if options.pretrained_embeddings:
            raise UsageError(
                f"--pretrained-embeddings starts a new embedding, but the base {self.name} "
                "brings its own; leave it out"
            )

    def plan(self, options: TrainOptions, device_type: str) -> Plan:
        """The fine-tune's model and training settings, with the reasons (see the module)."""
        asked = options.explicit()
        model = self.model_config
        if "dropout" in asked:
            model = replace(model, dropout=asked["dropout"])
        theirs = TrainConfig.from_dict(self.config["train"])
        train = {name: getattr(theirs, name) for name in KEPT}
        same_device = str(self.config.get("device", "")).split(":")[0] == device_type
        if asked.get("precision", "auto") == "auto":
            asked.pop("precision", None)
            precision = self.config.get("precision", "auto")  # what the base's plan chose
            # (bf16 on a CPU only where this CPU has it: the base may come from another machine)
            if same_device and (precision != "bf16" or device_type != "cpu" or cpu_has_bf16()):
                train["precision"] = precision
        train["lr"] = round(theirs.lr * LR_SCALE, 8)
        train["warmup_steps"] = WARMUP_STEPS
        names = {f.name for f in fields(TrainConfig)}
        train.update({k: v for k, v in asked.items() if k in names})
        train_config = TrainConfig(**train)
        reasons = [
            f"fine-tuning {self.name}: its architecture, tokenizer, context "
            f"{train_config.context} and batch {train_config.batch_size}",
            f"learning rate {train_config.lr:g}"
            + (
                f": the base's peak times {LR_SCALE:g} after a {WARMUP_STEPS}-step warmup (at 2 "
                "minutes 0.1 and 0.3 times ended worse, 2 times no better: benchmarks/README.md)"
                if "lr" not in asked
                else " (--lr)"
            ),
        ]
        return Plan(model, train_config, reasons)

    def tokenizer_for(self, split: Split) -> Tokenizer:
        """The fine-tune's tokenizer: the base's, with the characters `split.train` adds."""
        if not isinstance(self.tokenizer, CharTokenizer):
            return self.tokenizer
        seen = set(CharTokenizer.train(read_chunks(split.train)).chars)
        if seen <= set(self.tokenizer.chars):
            return self.tokenizer
        return CharTokenizer(sorted(seen | set(self.tokenizer.chars)))

    def added(self, tokenizer: Tokenizer) -> list[str]:
        """The characters `tokenizer` has and the base's lacks."""
        if not isinstance(self.tokenizer, CharTokenizer) or tokenizer is self.tokenizer:
            return []
        return sorted(set(tokenizer.chars) - set(self.tokenizer.chars))

    def load_into(self, model: torch.nn.Module, tokenizer: Tokenizer) -> None:
        """Give `model` (built for `tokenizer`'s vocabulary) the base's weights: each token's
        rows (embedding, output) the base's for that token, a new token's the mean of the
        base's rows.

        Raises:
            DataError: when `tokenizer` lacks one of the base's tokens.
        """
        old = self.tokenizer
        if not isinstance(old, CharTokenizer):  # kept as it is (a run resumed reads it back)
            if tokenizer.fingerprint() != old.fingerprint():
                raise DataError("the run's tokenizer is not its base's; train the run again")
        elif tokenizer is not old:
            missing = set(old.chars) - set(tokenizer.chars)
            if missing:
                raise DataError(f"the tokenizer lacks {len(missing)} of the base's characters")
            # where each new id's row comes from in the base (-1: a new token)
            source = torch.tensor([old.index.get(c, -1) for c in tokenizer.chars] + [old.unk_id])
        target = model.state_dict()
        with torch.no_grad():
            for name, tensor in self.weights.items():
                if name == "positions.weight":  # learned (GPT-2): those of the run's context
                    tensor = tensor[: target[name].shape[0]]
                elif tensor.shape != target[name].shape:  # rows per token of the vocabulary
                    rows = tensor[source.clamp(min=0)].clone()
                    rows[source < 0] = tensor.mean(dim=0)
                    tensor = rows
                target[name].copy_(tensor)

    def lineage(self, tokenizer: Tokenizer) -> dict:
        """What the fine-tune's config.json says of its base."""
        data, best = self.config.get("data", {}), self.config.get("best") or {}
        added = self.added(tokenizer)
        return {
            "name": self.name,
            "corpus": data.get("corpus"),
            "corpus_sha256": data.get("corpus_sha256"),
            "val_loss": best.get("val_loss"),
            "val_bpc": best.get("val_bpc"),
            "step": best.get("step"),
            "weights_sha256": self.weights_sha256(),
            "added_tokens": len(added),
            "added_chars": "".join(added),
        }


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def base_index(config: dict, checkpoints_dir: Path):
    """The originality index of the corpus of the base a run (its `config`) was fine-tuned
    from (`originality.Index`), for reports against what the base read.

    Raises:
        UsageError: when the run has no base.
        DataError: when the base is gone or keeps no index.
    """
    from authorgen.originality import Index
    from authorgen.run_folder import existing_mapped_dir

    lineage = config.get("base")
    if not lineage:
        raise UsageError(
            f"run {config.get('name')} was not fine-tuned from a base (train --from); "
            "leave out --against-base"
        )
    if lineage.get("pretrained"):
        raise UsageError(
            f"the base {lineage['name']} is a pretrained model: what it read is not known; "
            "leave out --against-base"
        )
    base_dir = checkpoint.resolve_run(lineage["name"], checkpoints_dir)
    maps = checkpoint.read_config(base_dir).get("maps")
    folder = existing_mapped_dir(base_dir, maps, checkpoint.INDEX)
    if folder is None:
        raise DataError(f"the base {lineage['name']} keeps no index of its corpus (--no-index)")
    return Index(folder)
