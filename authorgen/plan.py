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

from authorgen.config import DEFAULT_VOCAB, ModelConfig, TrainConfig, TrainOptions
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
    "lstm-medium": dict(
        LSTM_CPU, hidden=384, embedding_dim=96, dropout=0.05, batch_size=8, context=128,
        lr=2.5e-3,
    ),
    "lstm-large": dict(
        LSTM_CPU, hidden=512, embedding_dim=128, dropout=0.1, batch_size=8, context=128, lr=2e-3
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


# The CPU's candidates, measured by the speed probe (`authorgen.probe`) on each machine. On Tiny
# Shakespeare (char), each one's best validation loss after reading D million training tokens
# (with the schedule fitted to its budget) follows E + A D^-alpha: `(E, A, alpha)`, fitted by
# benchmarks/sweep.py to runs of 1, 5 and 20 minutes on 2 cores (benchmarks/README.md). The
# small LSTM learns most per token but stops near 1.55; the wide ones go on to 1.47 and 1.44
# in 20 minutes. With a machine's measured tokens per second and a budget, D and so each
# candidate's expected loss follow: a fast machine or a long budget reads enough for a bigger
# model to win.
CPU_CURVES = {
    "lstm": (1.5327, 0.0802, 2.0),
    "lstm-medium": (1.2636, 0.4931, 0.38),
    "lstm-large": (1.2869, 0.422, 0.49),
}
BF16_GAIN = 1.1  # bf16 is used where it measures at least this much faster than fp32
TRAIN_SHARE = 0.9  # of a time budget spent in training steps (evaluations take the rest)
MEMORY_SHARE = 0.5  # of the free memory a plan may use


@dataclass
class Plan:
    model: ModelConfig
    train: TrainConfig
    reasons: list[str] = field(default_factory=list)  # what was chosen and why, for the user
    speeds: dict | None = None  # the probe's measurements the choice rests on, if any


def probe_shapes(tokenizer: str, vocab_size: int | None = None) -> dict[str, tuple[dict, int, int]]:
    """What the speed probe measures: each CPU candidate's model fields, batch and context, with
    the vocabulary the tokenizer will likely have."""
    vocab = vocab_size or DEFAULT_VOCAB.get(tokenizer, 100)
    shapes = {}
    for name in CPU_CURVES:
        preset = PRESETS[name]
        model = {k: v for k, v in preset.items() if k in MODEL_FIELDS}
        shapes[name] = ({**model, "vocab_size": vocab}, preset["batch_size"], preset["context"])
    return shapes


def training_bytes(preset: dict, vocab: int) -> int:
    """About how much memory training `preset` takes: weights, gradients and AdamW's two
    moments in fp32 (16 bytes a weight), and the activations kept for the backward pass."""
    return 16 * estimated_params(preset, vocab) + activation_bytes(preset, vocab)


def activation_bytes(preset: dict, vocab: int) -> int:
    """About how much memory a training step's activations take (fp32), kept for the backward
    pass."""
    e, layers = preset["embedding_dim"], preset["layers"]
    if preset["model"] == "transformer":
        per_token = layers * (8 * e + 2 * preset["mlp_dim"] + preset["heads"] * preset["context"])
    else:
        per_token = layers * 10 * preset["hidden"] + e
    batch_tokens = preset["batch_size"] * preset["context"]
    return 4 * batch_tokens * (per_token + 3 * vocab)


def estimated_params(preset: dict, vocab: int) -> int:
    """The weights of the model `preset` describes (biases aside), without building it."""
    e, layers = preset["embedding_dim"], preset["layers"]
    if preset["model"] == "transformer":
        return vocab * e + layers * (4 * e * e + 2 * e * preset["mlp_dim"])
    h, gates = preset["hidden"], {"lstm": 4, "gru": 3, "rnn": 1}[preset["model"]]
    return vocab * e + gates * h * (e + h + (layers - 1) * 2 * h) + h * vocab


def expected_loss(name: str, tokens_read: float) -> float:
    """A CPU candidate's expected validation loss after reading `tokens_read` tokens."""
    floor, scale, alpha = CPU_CURVES[name]
    return floor + scale * (max(tokens_read, 1.0) / 1e6) ** -alpha


def _measured_choice(
    speeds: dict[str, dict[str, float]], time_s: float, vocab: int, memory: int | None
) -> tuple[str, str, list[str]]:
    """The CPU candidate, and its precision, expected to end the budget lowest; with the
    reasons: what was measured and what each would reach."""
    fitting = {
        name: speed
        for name, speed in speeds.items()
        if memory is None or training_bytes(PRESETS[name], vocab) <= MEMORY_SHARE * memory
    } or {"lstm": speeds["lstm"]}
    expected = {}
    for name, speed in fitting.items():
        precision = fast_precision(speed)
        expected[name] = (expected_loss(name, speed[precision] * time_s * TRAIN_SHARE), precision)
    name = min(expected, key=lambda n: expected[n][0])
    measured = "; ".join(
        f"{n} {s['fp32']:,.0f} tokens/s fp32" + (f", {s['bf16']:,.0f} bf16" if "bf16" in s else "")
        for n, s in speeds.items()
    )
    outlook = ", ".join(f"{n} {loss:.2f}" for n, (loss, _) in expected.items())
    left_out = sorted(speeds.keys() - fitting.keys())
    reasons = [
        f"measured on this machine: {measured}",
        f"expected val nats/char in {time_s:g} s (Tiny Shakespeare's curves): {outlook}"
        + (f"; {', '.join(left_out)} would not fit in memory" if left_out else ""),
    ]
    return name, expected[name][1], reasons


def _same_shape(preset: dict, settings: dict) -> bool:
    """Whether `settings` train the model `preset` measures, at its batch and context."""
    shape = (MODEL_FIELDS - {"dropout"}) | {"batch_size", "context"}
    return all(settings.get(k) == preset.get(k) for k in shape)


def fast_precision(speed: dict[str, float]) -> str:
    """bf16 where the probe measured it clearly faster than fp32, else fp32 (also where the
    probe's time ran out before it measured bf16)."""
    faster = "bf16" in speed and speed["bf16"] >= BF16_GAIN * speed["fp32"]
    return "bf16" if faster else "fp32"


def _auto_preset(tokens: int, device: str, time_s: float | None) -> tuple[str, str]:
    """The preset for a corpus of `tokens` training tokens, and why."""
    size = f"{tokens:,} training tokens"
    if device == "mps":
        # An Apple GPU computes several times less than the CUDA GPUs the ladder below was
        # measured on, and no preset has been measured on one yet: a rung smaller
        why = "an Apple GPU (MPS; a rung smaller than a CUDA GPU's, not yet measured on a Mac)"
        if tokens < 50_000:
            return "transformer-tiny", f"{why} and a very small corpus ({size})"
        if tokens < 20_000_000:
            return "transformer-small", f"{why} and {size}"
        return "transformer", f"{why} and a large corpus ({size})"
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


def wants_speeds(
    first: Plan, options: TrainOptions, device: str, bf16: bool, preset: str | None = None
) -> bool:
    """Whether the speed probe could change plan `first` (made without it): the CPU model when
    no sizes are given and the budget is a time, or the precision of a measured shape when it
    is auto and the CPU may be faster in bf16."""
    if device != "cpu":
        return False
    explicit = options.explicit()
    free = not (SIZE_FIELDS & explicit.keys()) and preset is None and "time_s" in explicit
    if free and first.model.model == "lstm" and first.model.hidden >= PRESETS["lstm"]["hidden"]:
        return True
    settings = {**first.model.to_dict(), **first.train.to_dict()}
    auto = explicit.get("precision", "auto") == "auto"
    return auto and bf16 and any(_same_shape(PRESETS[n], settings) for n in CPU_CURVES)


def choose(
    train_chars: int,
    tokenizer: str,
    device: str,
    options: TrainOptions,
    preset: str | None = None,
    *,
    speeds: dict[str, dict[str, float]] | None = None,
    memory: int | None = None,
) -> Plan:
    """The model and training settings: the options the user set, then `preset` (or the
    automatic one), then the library defaults.

    `train_chars` is the size of the training text; `device` is "cpu", "cuda" or "mps".
    `speeds` are the probe's measurements of the CPU candidates (`probe_shapes`) on this
    machine: with them, and a time budget, the CPU plan picks the candidate expected to end
    lowest, and `--precision auto` the faster precision. `memory` is the free memory in bytes;
    no candidate that would need more than half of it is chosen.

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
        time_s = explicit.get("time_s")
        if speeds and device == "cpu" and name in ("lstm", "lstm-large") and time_s and not sized:
            vocab = next(iter(probe_shapes(tokenizer).values()))[0]["vocab_size"]
            name, _, notes = _measured_choice(speeds, time_s, vocab, memory)
            why = "expected to end the budget lowest at this machine's measured speed"
            reasons.extend(notes)
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
    if speeds and device == "cpu" and settings.get("precision", "auto") == "auto":
        # measured for this very shape: the precision, fixed in the run so resume keeps it
        shape = next((n for n in speeds if _same_shape(PRESETS[n], settings)), None)
        if shape is not None:
            settings["precision"] = fast_precision(speeds[shape])
            speed = speeds[shape]
            reasons.append(
                f"precision {settings['precision']}: "
                + (
                    f"bf16 measured {speed['bf16'] / speed['fp32']:.2f}x as fast as fp32"
                    if "bf16" in speed
                    else "this CPU has no fast bf16"
                )
            )
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
    return Plan(model, train, reasons, speeds)


def overfit_warning(params: int, tokens: int, fine_tune: bool = False) -> str | None:
    """A warning when a model has far more weights than its corpus has tokens."""
    if params <= 20 * tokens:
        return None
    helps = "fewer steps" if fine_tune else "a smaller model (e.g. --preset tiny)"
    return (
        f"the model has {params:,} parameters for {tokens:,} training tokens: it will likely "
        f"memorise the text. The best weights by validation are kept; {helps} or more works "
        "in the corpus would help"
    )
