"""Typed configurations, validated on creation and saved as JSON beside the weights. No torch here.

Each `__post_init__` says how to fix a bad value, so the command line can pass options straight
through and show the message as it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from authorgen.errors import UsageError, field

MODELS = ("lstm", "gru", "rnn", "transformer")
BATCHING = ("stream", "windows")
DEVICES = ("auto", "cpu", "cuda", "mps")
GENERATION_PRECISIONS = ("auto", "fp32", "int8")  # the weights generate and serve use
PRECISIONS = ("auto", "fp32", "bf16")
TOKENIZERS = ("char", "word", "bpe", "unigram")
# Default vocabulary sizes. word: 10,000 types cover about 97% of the running words of a novel.
# bpe/unigram: 2,000 pieces (256 of them bytes) give about 3 characters per token on English prose
# while the softmax stays small enough for a CPU.
DEFAULT_VOCAB = {"word": 10_000, "bpe": 2_000, "unigram": 2_000}


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{field(name)} must be a whole number of at least 1 (got {value!r})")


def _finite(
    name: str, value: float, low: float, high: float | None = None, *, low_open: bool = False
) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (high is None or value <= high)
    if not ok:
        bound = f"above {low}" if low_open else f"at least {low}"
        if high is not None:
            bound += f" and at most {high}"
        raise UsageError(f"{field(name)} must be a finite number {bound} (got {value!r})")


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "5m", "1h30m" or "1.5h".

    Raises:
        UsageError: when the text is not such a duration or is not positive.
    """
    s = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        unit = (m.group(2) or "s").lower()
        total += float(m.group(1)) * {"h": 3600, "m": 60, "s": 1}[unit]
        pos = m.end()
    if not s or pos != len(s) or not math.isfinite(total) or total <= 0:
        raise UsageError(f"--time wants a duration such as 90s, 5m or 1h30m (got {text!r})")
    return total


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str, option: str = "--max-bytes") -> int:
    """Bytes in "5000000", "500k", "64M", "64MB", "1.5G" (k, M and G are powers of 1024).

    Raises:
        UsageError: when the text is not such a size or is under one byte.
    """
    m = _SIZE_RE.fullmatch(text.strip())
    size = float(m.group(1)) * 1024 ** " kmg".index(m.group(2).lower() or " ") if m else 0.0
    if not m or not math.isfinite(size) or size < 1:
        raise UsageError(f"{option} wants a size such as 64M, 500k or 2G (got {text!r})")
    return int(size)


class _Saved:
    """JSON round trip shared by the configs."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TokenizerConfig(_Saved):
    """How text becomes tokens (see `authorgen.tokenizer`)."""

    kind: str = "char"  # char | word | bpe | unigram
    vocab_size: int | None = None  # word, bpe, unigram; None: DEFAULT_VOCAB
    lowercase: bool = False  # word only: fold case, restore it when decoding

    def __post_init__(self) -> None:
        if self.kind == "pretrained" and self.vocab_size is None and not self.lowercase:
            return  # a pretrained model's own (train --from a model folder)
        if self.kind not in TOKENIZERS:
            raise UsageError(
                f"--tokenizer must be one of {', '.join(TOKENIZERS)} (got {self.kind!r})"
            )
        if self.kind == "char":
            if self.vocab_size is not None:
                raise UsageError(
                    "--vocab-size applies to word, bpe and unigram; a char vocabulary is every "
                    "character of the training text"
                )
        elif self.vocab_size is None:
            self.vocab_size = DEFAULT_VOCAB[self.kind]
        least = {"char": 1, "word": 2, "bpe": 300, "unigram": 300}[self.kind]
        if self.vocab_size is not None:
            _positive_int("vocab_size", self.vocab_size)
            if self.vocab_size < least:
                why = " (256 byte pieces come first)" if least == 300 else ""
                raise UsageError(
                    f"--vocab-size for {self.kind} must be at least {least}{why} "
                    f"(got {self.vocab_size})"
                )
        if self.lowercase and self.kind != "word":
            raise UsageError(
                "--lowercase applies to the word tokenizer only; the others keep the text "
                "exactly as it is"
            )


@dataclass
class ModelConfig(_Saved):
    """A recurrent network (Embedding -> stacked SimpleRNN/LSTM/GRU -> linear softmax head) or a
    decoder-only transformer.

    The defaults are the classic char-rnn network (2 x 256 LSTM): on a 2-core CPU it is the best
    model that still sees the corpus about three times in a five-minute budget. `authorgen train`
    sizes models itself (`authorgen.plan`) unless told.
    """

    model: str = "lstm"  # lstm | gru | rnn (Elman SimpleRNN, tanh) | transformer
    vocab_size: int = 0  # filled in from the tokenizer
    embedding_dim: int = 64  # the size of a token's vector (the transformer: its width too)
    layers: int = 2
    dropout: float = 0.0  # RNN: between layers and before the head; transformer: everywhere
    # recurrent networks only
    hidden: int | None = None  # units per recurrent layer (default 256)
    tie_weights: bool | None = None  # the output layer reuses the embedding (default: no)
    # the transformer only (it always ties its output layer to the embedding)
    heads: int = 0  # attention heads
    mlp_dim: int | None = None  # the MLP's inner width (default: 4 x embedding_dim)
    context: int = 0  # the longest span it attends over (its training context)
    variant: dict | None = None  # a pretrained family's (models.transformer.Variant)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UsageError(f"--model must be one of {', '.join(MODELS)} (got {self.model!r})")
        for name in ("embedding_dim", "layers"):
            _positive_int(name, getattr(self, name))
        if self.vocab_size < 0:
            raise UsageError("vocab_size cannot be negative")
        _finite("dropout", self.dropout, 0.0, 0.9)
        if self.model != "transformer":
            if self.variant:
                raise UsageError("a variant applies to the transformer only")
            if self.heads or self.mlp_dim is not None:
                raise UsageError(
                    f"--{'heads' if self.heads else 'mlp-dim'} applies to the transformer only; "
                    "a recurrent network's size is --hidden"
                )
            self.hidden = 256 if self.hidden is None else self.hidden
            _positive_int("hidden", self.hidden)
            self.tie_weights = bool(self.tie_weights)
            return
        if self.hidden is not None:
            raise UsageError(
                "--hidden sizes a recurrent network; the transformer's MLP width is --mlp-dim"
            )
        if self.tie_weights is False:
            raise UsageError("the transformer always ties its output layer to the embedding")
        self.tie_weights = True
        _positive_int("heads", self.heads)
        _positive_int("context", self.context)
        self.mlp_dim = 4 * self.embedding_dim if self.mlp_dim is None else self.mlp_dim
        _positive_int("mlp_dim", self.mlp_dim)
        if self.embedding_dim % self.heads or (self.embedding_dim // self.heads) % 2:
            raise UsageError(
                f"--embedding-dim ({self.embedding_dim}) must split into --heads ({self.heads}) "
                "heads of an even size; e.g. --embedding-dim 384 --heads 6"
            )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if data["variant"] is None:
            del data["variant"]  # authorgen's own transformer, or a recurrent network
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The config saved as `data`; runs saved before `mlp_dim` existed kept the
        transformer's MLP width in `hidden`."""
        data = dict(data)
        if data.get("model") == "transformer" and "mlp_dim" not in data:
            data["mlp_dim"] = data.pop("hidden", None)
        return super().from_dict(data)


@dataclass
class TrainConfig(_Saved):
    """How to train. `steps` and `time_s` are both budgets; training ends at whichever comes first.

    The learning-rate schedule (linear warmup, then cosine down to `min_lr_ratio * lr`) is fitted
    to that budget, so a time-limited run still ends with a small learning rate.
    """

    # Small batches on purpose: on a CPU an LSTM's tokens per second hardly depend on the batch
    # size, so smaller batches buy more optimizer steps for the same tokens. Random windows
    # rather than a few streams, whose place in the text makes the validation loss swing. The
    # measurements behind these numbers are in benchmarks/README.md.
    context: int = 64  # tokens of backpropagation through time per step
    batch_size: int = 4
    batching: str = "windows"  # windows: random windows; stream: stateful truncated BPTT
    lr: float = 3e-3  # AdamW peak
    steps: int | None = None
    time_s: float | None = None
    eval_every: int = 2000  # one evaluation of Tiny Shakespeare's val split costs ~4 s on CPU
    seed: int = 1337
    device: str = "auto"
    grad_clip: float = 1.0  # max global gradient norm: the cure for exploding gradients
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    pretrained_embeddings: str | None = None  # GloVe text file (word tokenizer)
    eval_every_s: float = 600.0  # also validate when this long has passed since the last time
    patience: int | None = None  # stop after this many evaluations without a better val loss
    precision: str = "auto"  # auto: bf16 autocast on a CUDA GPU that has it, else fp32
    compile: bool = False  # torch.compile the model (CUDA; minutes of compiling first)
    index: bool = True  # keep an originality index of the corpus in the run (see originality.py)
    ngrams: bool = (
        True  # keep the training text's n-gram counts, mixed into predictions (ngrams.py)
    )
    lora: int = 0  # the rank of low-rank adapters (lora.py); 0: every weight is trained

    def __post_init__(self) -> None:
        if not isinstance(self.lora, int) or isinstance(self.lora, bool) or self.lora < 0:
            raise UsageError(f"{field('lora')} must be a rank of 0 or more (got {self.lora!r})")
        for name in ("context", "batch_size", "eval_every"):
            _positive_int(name, getattr(self, name))
        steps = self.steps  # 0: no step, the weights as they start (a fine-tune's base)
        if steps is not None and (
            not isinstance(steps, int) or isinstance(steps, bool) or steps < 0
        ):
            raise UsageError(
                f"{field('steps')} must be a whole number of 0 or more (got {steps!r})"
            )
        if self.time_s is not None:
            _finite("time", self.time_s, 0.0, low_open=True)
        if self.steps is None and self.time_s is None:
            raise UsageError("give a budget: --steps N or --time DURATION (e.g. --time 5m)")
        _finite("lr", self.lr, 0.0, 10.0, low_open=True)
        _finite("grad_clip", self.grad_clip, 0.0, low_open=True)
        _finite("weight_decay", self.weight_decay, 0.0, 1.0)
        _finite("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise UsageError(f"warmup_steps must be 0 or more (got {self.warmup_steps!r})")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be a whole number of 0 or more (got {self.seed!r})")
        if self.batching not in BATCHING:
            raise UsageError(
                f"--batching must be one of {', '.join(BATCHING)} (got {self.batching!r})"
            )
        _finite("eval_every_s", self.eval_every_s, 0.0, low_open=True)
        if self.patience is not None:
            _positive_int("patience", self.patience)
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})"
            )
        if self.device not in DEVICES:
            raise UsageError(f"--device must be one of {', '.join(DEVICES)} (got {self.device!r})")


DEFAULT_TIME_S = 300.0  # `train` with no budget: 5 minutes


@dataclass
class TrainOptions:
    """What a user asked of `authorgen train`: each field left at None is chosen by the plan
    (`authorgen.plan`) or falls back to TrainConfig's default. With no budget at all the run
    gets `DEFAULT_TIME_S`.
    """

    # the model's sizes (ModelConfig fields)
    model: str | None = None
    layers: int | None = None
    hidden: int | None = None
    embedding_dim: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    tie_weights: bool | None = None
    dropout: float | None = None
    # how it trains (TrainConfig fields)
    context: int | None = None
    batch_size: int | None = None
    batching: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    min_lr_ratio: float | None = None
    grad_clip: float | None = None
    steps: int | None = None
    time_s: float | None = None
    eval_every: int | None = None
    eval_every_s: float | None = None
    patience: int | None = None
    seed: int | None = None
    device: str = "auto"
    precision: str | None = None
    compile: bool | None = None
    index: bool | None = None
    ngrams: bool | None = None
    pretrained_embeddings: str | None = None
    lora: int | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.time_s is None:
            self.time_s = DEFAULT_TIME_S
        # Each option on its own, now: before torch loads or a corpus is read. How the sizes
        # fit together (heads and width, one family's options on the other) the plan checks.
        if self.model is not None and self.model not in MODELS:
            raise UsageError(f"--model must be one of {', '.join(MODELS)} (got {self.model!r})")
        for name in ("layers", "hidden", "embedding_dim", "heads", "mlp_dim"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.dropout is not None:
            _finite("dropout", self.dropout, 0.0, 0.9)
        trained = {f.name for f in fields(TrainConfig)}
        TrainConfig(**{k: v for k, v in self.explicit().items() if k in trained})

    def explicit(self) -> dict[str, Any]:
        """The options that were set, by field name."""
        return {k: v for k, v in asdict(self).items() if v is not None}


UNTIL = ("sentence", "paragraph")
# --known-words when neither it nor --any-words is given: on, as measured on eight authors
# (benchmarks/README.md): no invented words, the same style and copies
KNOWN_WORDS = True
# the largest sample seed: a sample's generator takes 64 bits, and the samples of a batch take
# the seeds after it
MAX_SEED = 2**63 - 1
# SampleConfig's fields that say what to write rather than how each token is drawn
REQUEST_FIELDS = ("length", "n", "seed", "stop", "until", "max_tokens")
MAX_UNTIL_EXTRA = 1000  # --until looks this many characters past --length (or --length, if more)


@dataclass
class SampleConfig(_Saved):
    """How to sample. The stages apply in this order (`samplers.py`; each is off at its
    default but temperature): repetition penalty, no-repeat n-grams, DRY, temperature (0:
    greedy, the rest skipped), top-k, top-p, min-p, typical, eta.
    """

    # temperature and ngram_share: the draw whose samples were hardest to tell from the
    # author's held-out pages, of 60 settings on eight authors (benchmarks/README.md, realism)
    temperature: float = 1.0
    length: int = 500  # characters generated per sample, the prompt not counted
    n: int = 1
    seed: int | None = None  # None: a fresh seed is drawn, reported and saved with the output
    top_k: int | None = None  # keep the k likeliest tokens
    top_p: float = 1.0  # keep the fewest likeliest tokens whose probabilities reach p
    min_p: float = 0.0  # keep the tokens at least this times as likely as the likeliest (0: off)
    typical_p: float = 1.0  # keep the most typical tokens whose probabilities reach this
    eta: float = 0.0  # ban tokens below min(eta, sqrt(eta) exp(-entropy)) (0: off)
    repetition_penalty: float = 1.0  # divide (positive) logits of recent tokens by this
    repetition_window: int = 64  # tokens the penalty looks back over
    no_repeat_ngram: int = 0  # never repeat an n-gram of tokens (0: off)
    dry: float = 0.0  # DRY's multiplier: penalise extending a repeat of the text (0: off)
    dry_allowed: int = 2  # tokens a repeat may have before DRY penalises it
    stop: tuple[str, ...] = ()  # end before the first of these strings
    until: str | None = None  # after `length` characters, go on to a sentence or paragraph end
    max_copy: int | None = None  # resample whatever would copy more characters from the corpus
    max_tokens: int | None = None  # end a sample after this many tokens (the API's max_tokens)
    # spell only words of the training text (None: the default, KNOWN_WORDS, for char and
    # subword runs; a word model writes only its words anyway)
    known_words: bool | None = None
    # mix the run's n-gram counts into its predictions (None: where the run keeps them)
    ngrams: bool | None = None
    ngram_share: float = 1.5  # the counts' weight in the mix, as a multiple of the fitted one

    def __post_init__(self) -> None:
        _finite("temperature", self.temperature, 0.0, 100.0)
        _positive_int("length", self.length)
        _positive_int("n", self.n)
        if self.seed is not None and (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or not 0 <= self.seed <= MAX_SEED
        ):
            raise UsageError(
                f"{field('seed')} must be a whole number from 0 to {MAX_SEED} (got {self.seed!r})"
            )
        if self.top_k is not None:
            _positive_int("top_k", self.top_k)
        _finite("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _finite("min_p", self.min_p, 0.0, 1.0)
        _finite("typical_p", self.typical_p, 0.0, 1.0, low_open=True)
        _finite("eta", self.eta, 0.0, 0.5)
        _finite("dry", self.dry, 0.0, 100.0)
        _finite("ngram_share", self.ngram_share, 0.0, 100.0)
        _positive_int("dry_allowed", self.dry_allowed)
        _finite("repetition_penalty", self.repetition_penalty, 0.0, 100.0, low_open=True)
        _positive_int("repetition_window", self.repetition_window)
        if (
            not isinstance(self.no_repeat_ngram, int)
            or isinstance(self.no_repeat_ngram, bool)
            or self.no_repeat_ngram < 0
        ):
            raise UsageError(
                f"{field('no_repeat_ngram')} must be a whole number, 0 (off) or more "
                f"(got {self.no_repeat_ngram!r})"
            )
        self.stop = tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise UsageError(f"{field('stop')} must not be empty; give the text to end before")
        if self.until is not None and self.until not in UNTIL:
            raise UsageError(
                f"{field('until')} must be one of {', '.join(UNTIL)} (got {self.until!r})"
            )
        if self.max_copy is not None:
            _positive_int("max_copy", self.max_copy)
        if self.max_tokens is not None:
            _positive_int("max_tokens", self.max_tokens)
        for name in ("known_words", "ngrams"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise UsageError(f"{field(name)} must be true or false (got {value!r})")

    @property
    def limit(self) -> int:
        """The most characters a sample may have: `length`, or more with `until`."""
        if self.until is None:
            return self.length
        return self.length + max(self.length, MAX_UNTIL_EXTRA)
