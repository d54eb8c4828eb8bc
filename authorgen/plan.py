"""Choosing a model and its training settings from the corpus, the device and the budget.

`authorgen train` with no size options asks `choose` what to train, and prints the reasons.
Options the user gives always win; the plan fills in the rest. Presets are plain data, so a
preset is just a set of options (`--preset NAME`); the user's options override it too.

The rungs, and what stands behind them:
- CPU: a 2 x 256 LSTM on 4 random windows of 64 tokens at lr 3e-3 is the best of the settings
  measured in 4- and 5-minute budgets on 2 cores (benchmarks/README.md: 1.56 nats/char on Tiny
  Shakespeare in 5 minutes, where a transformer reaches 1.88 with nanoGPT's CPU recipe).
  Corpora under ~100k tokens get a smaller LSTM with dropout, since the big one would memorise
  them; long budgets on big corpora a 2 x 512 one.
- CUDA: a transformer, nanoGPT's Shakespeare recipe (6 layers, 6 heads, 384 wide, context 256,
  dropout 0.2, batch 64, lr 1e-3) for corpora up to a few million tokens, narrower for tiny
  corpora and wider, with less dropout, for big ones.
No torch here: the device is passed in by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authorgen.config import ModelConfig, TrainConfig, TrainOptions
from authorgen.errors import UsageError

# Tokens per character of English prose at the default vocabulary sizes (benchmarks/README.md),
# to size a model before the tokenizer has run.
TOKENS_PER_CHAR = {"char": 1.0, "word": 0.25, "bpe": 0.36, "unigram": 0.36}

LSTM_CPU = dict(
    model="lstm", layers=2, hidden=256, embedding_dim=64, dropout=0.0,
    context=64, batch_size=4, batching="windows", lr=3e-3, warmup_steps=50,
)  # fmt: skip
# nanoGPT's shakespeare_char recipe: 10.7M parameters, 1.47 nats/char on a GPU
TRANSFORMER = dict(
    model="transformer", layers=6, heads=6, embedding_dim=384, mlp_dim=1536, dropout=0.2,
    context=256, batch_size=64, batching="windows", lr=1e-3, warmup_steps=100, weight_decay=0.1,
)  # fmt: skip
PRESETS: dict[str, dict] = {
    # a few thousand parameters: tests, and corpora of a few pages
    "tiny": dict(
        LSTM_CPU, layers=1, hidden=64, embedding_dim=32, dropout=0.2, context=32, warmup_steps=20
    ),
    "lstm-small": dict(LSTM_CPU, layers=1, hidden=128, embedding_dim=32, dropout=0.2),
    "lstm": LSTM_CPU,
    "lstm-large": dict(
        LSTM_CPU, hidden=512, embedding_dim=128, dropout=0.1, batch_size=8, lr=2e-3
    ),
    "transformer-tiny": dict(
        TRANSFORMER, layers=2, heads=2, embedding_dim=64, mlp_dim=256, context=64, batch_size=16,
        warmup_steps=50,
    ),
    "transformer-small": dict(
        TRANSFORMER, layers=4, heads=4, embedding_dim=128, mlp_dim=512, context=128
    ),
    "transformer": TRANSFORMER,
    "transformer-large": dict(
        TRANSFORMER, layers=8, heads=8, embedding_dim=512, mlp_dim=2048, dropout=0.1,
        context=512, batch_size=32, lr=6e-4, warmup_steps=200,
    ),
}  # fmt: skip

MODEL_FIELDS = {
    "model", "layers", "hidden", "embedding_dim", "dropout", "heads", "mlp_dim", "tie_weights",
}  # fmt: skip
# the fields of one family that a preset of the other brings along and the user did not give
OTHER_FAMILY = {"transformer": ("hidden", "tie_weights"), "rnn": ("heads", "mlp_dim")}
# What a plan chooses; options outside these (steps, time, seed, device...) pass straight through.
SIZE_FIELDS = MODEL_FIELDS | {
    "context", "batch_size", "batching", "lr", "warmup_steps", "weight_decay",
}  # fmt: skip


@dataclass
class Plan:
    model: ModelConfig
    train: TrainConfig
    reasons: list[str] = field(default_factory=list)  # what was chosen and why, for the user


def _auto_preset(tokens: int, device: str, time_s: float | None) -> tuple[str, str]:
    """The preset for a corpus of `tokens` training tokens, and why."""
    size = f"{tokens:,} training tokens"
    if device == "cuda":
        if tokens < 50_000:
            return "transformer-tiny", f"a CUDA GPU and a very small corpus ({size})"
        if tokens < 300_000:
            return "transformer-small", f"a CUDA GPU and a small corpus ({size})"
        if tokens < 20_000_000:
            return "transformer", f"a CUDA GPU and {size} (nanoGPT's Shakespeare recipe)"
        return "transformer-large", f"a CUDA GPU and a large corpus ({size})"
    if tokens < 30_000:
        return "tiny", f"a very small corpus ({size}) on the CPU"
    if tokens < 150_000:
        return "lstm-small", f"a small corpus ({size}) on the CPU"
    if time_s is not None and time_s >= 3600 and tokens >= 5_000_000:
        return "lstm-large", f"an hour or more on the CPU and a large corpus ({size})"
    return "lstm", f"the CPU and {size} (best measured in 5 minutes on 2 cores)"


def choose(
    train_chars: int,
    tokenizer: str,
    device: str,
    options: TrainOptions,
    preset: str | None = None,
) -> Plan:
    """The model and training settings: the options the user set, then `preset` (or the
    automatic one), then the library defaults.

    `train_chars` is the size of the training text; `device` is "cpu" or "cuda".

    Raises:
        UsageError: for an unknown preset, or options that do not fit together.
    """
    explicit = options.explicit()
    tokens = max(1, int(train_chars * TOKENS_PER_CHAR.get(tokenizer, 1.0)))
    reasons = []
    sized = SIZE_FIELDS & explicit.keys()
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"--preset must be one of {', '.join(PRESETS)} (got {preset!r})")
        base = dict(PRESETS[preset])
        reasons.append(f"preset {preset}")
    elif "model" in explicit and explicit["model"] not in {PRESETS[p]["model"] for p in PRESETS}:
        base = dict(LSTM_CPU, model=explicit["model"])  # gru or rnn: the LSTM's sizes
        reasons.append(f"{explicit['model']} with the CPU LSTM's sizes")
    else:
        name, why = _auto_preset(tokens, device, explicit.get("time_s"))
        if "model" in explicit and PRESETS[name]["model"] != explicit["model"]:
            # --model transformer on a CPU, or an RNN on a GPU: that family's nearest rung
            name = {
                ("transformer", "cpu"): "transformer-small",
                ("transformer", "cuda"): "transformer",
            }.get((explicit["model"], device), "lstm")
            why = f"--model {explicit['model']}"
        base = dict(PRESETS[name])
        if base["model"] == "transformer" and device == "cpu":
            # a CPU gets little from big batches: more steps of 8 windows learn more
            base["batch_size"] = 8
            why += ", batch 8 on the CPU"
        reasons.append(f"preset {name}: {why}")
    if sized:
        named = (f"{k.replace('_', '-')} {explicit[k]}" for k in sorted(sized))
        reasons.append("given: " + ", ".join(named))
    settings = {**base, **explicit}
    family = "transformer" if settings["model"] == "transformer" else "rnn"
    for key in OTHER_FAMILY[family]:
        if key not in explicit:
            settings.pop(key, None)
    # Streams must fit the text: at least a few windows per stream.
    if settings["batching"] == "stream" and "context" not in explicit:
        fit = max(8, tokens // (settings["batch_size"] * 4))
        if fit < settings["context"]:
            settings["context"] = fit
            reasons.append(f"context {fit}: the text is short")
    model_fields = {k: v for k, v in settings.items() if k in MODEL_FIELDS}
    if settings["model"] == "transformer":
        model_fields["context"] = settings["context"]
        if "mlp_dim" not in explicit and "embedding_dim" in explicit:
            model_fields["mlp_dim"] = 4 * explicit["embedding_dim"]
    model = ModelConfig(**model_fields)
    train = TrainConfig(**{k: v for k, v in settings.items() if k not in MODEL_FIELDS})
    return Plan(model, train, reasons)


def overfit_warning(params: int, tokens: int) -> str | None:
    """A warning when a model has far more weights than its corpus has tokens."""
    if params <= 20 * tokens:
        return None
    return (
        f"the model has {params:,} parameters for {tokens:,} training tokens: it will likely "
        "memorise the text. The best weights by validation are kept; a smaller model "
        "(e.g. --preset tiny) or more works in the corpus would help"
    )
