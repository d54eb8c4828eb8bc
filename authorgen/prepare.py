"""The data of a training run: its tokenizer, both halves' token ids, and word vectors, checked
against the run's context and batch before any model is built.

The tokenizer and the ids come from the cache when the same text was tokenized the same way
before (see `data`); under torchrun, rank 0 makes them first and the others read them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from authorgen import distributed
from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig
from authorgen.corpus import Split
from authorgen.data import TokenIds, encode_split, prepare_tokenizer
from authorgen.errors import DataError, UsageError
from authorgen.files import cache_dir
from authorgen.tokenizer import Tokenizer
from authorgen.vectors import WordVectors, read_word_vectors, require_word_tokenizer, vector_dim


@dataclass
class RunData:
    """What a run trains and validates on."""

    tokenizer: Tokenizer
    train: TokenIds
    val: TokenIds
    vectors: WordVectors | None = None  # pretrained word vectors for the embedding

    @property
    def chars_per_token(self) -> float:
        return self.train.chars / len(self.train.ids)

    def tokenizer_record(self, config: TokenizerConfig) -> dict:
        """The tokenizer section of the run's record: as asked, and as it came out."""
        return {
            **config.to_dict(),
            "vocab_size": self.tokenizer.vocab_size,
            "requested_vocab_size": config.vocab_size,
            "tokens_per_char": round(len(self.train.ids) / self.train.chars, 6),
        }

    def sizes_record(self, split: Split) -> dict:
        """The sizes of both halves, for the data section of the run's record."""
        return {
            "split": split.description,
            "train_chars": self.train.chars,
            "val_chars": self.val.chars,
            "train_tokens": len(self.train.ids),
            "val_tokens": len(self.val.ids),
            "val_unk_tokens": self.val.unk,
        }


def prepare_data(
    split: Split,
    tokenizer_config: TokenizerConfig,
    train_config: TrainConfig,
    model_config: ModelConfig,
    *,
    cache: Path | None = None,
    tokenizer: Tokenizer | None = None,
    group: distributed.Group | None = None,
    report: Callable[[str], None] = lambda message: None,
) -> RunData:
    """The tokenizer (given, cached or trained on `split.train`), the token ids of both halves,
    and the word vectors `train_config` names, each step said through `report`.

    Raises:
        UsageError: for word vectors with another tokenizer or of another size.
        DataError: when the text is too short for the context and batch, or a file is bad.
    """
    group = group or distributed.Group()
    if train_config.pretrained_embeddings:  # fail before a long tokenizer training
        require_word_tokenizer(tokenizer_config.kind)
        vector_dim(train_config.pretrained_embeddings)
    # every machine has its own cache: its first process fills it, once rank 0 has shown the
    # text and tokenizer work (an error there is said once)
    data = group.node_first(
        lambda: _tokens(split, tokenizer_config, Path(cache or cache_dir()), tokenizer, report)
    )
    check_sizes(data, train_config, group.world)
    if train_config.pretrained_embeddings:
        data.vectors = read_word_vectors(
            train_config.pretrained_embeddings, data.tokenizer, data.train.ids
        )
        if data.vectors.dim != model_config.embedding_dim:
            raise UsageError(
                f"the word vectors have {data.vectors.dim} dimensions but --embedding-dim is "
                f"{model_config.embedding_dim}; leave --embedding-dim out to fit it"
            )
        report(data.vectors.describe())
    return data


def _since(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


def _tokens(
    split: Split,
    config: TokenizerConfig,
    cache: Path,
    tokenizer: Tokenizer | None,
    report: Callable[[str], None],
) -> RunData:
    t0 = time.monotonic()
    if tokenizer is None:
        tokenizer, reused = prepare_tokenizer(split, config, cache)
        report(
            f"tokenizer {config.kind}: {tokenizer.vocab_size:,} tokens in the "
            + ("vocabulary, from the cache" if reused else f"vocabulary, made in {_since(t0)}")
        )
    t0 = time.monotonic()
    encoded = encode_split(split, tokenizer, cache)
    train, val = encoded.train, encoded.val
    report(
        f"token ids: {len(train.ids) + len(val.ids):,} for {train.chars + val.chars:,} "
        + ("characters, from the cache" if encoded.reused else f"characters in {_since(t0)}")
        + f" ({encoded.folder})"
    )
    return RunData(tokenizer, train, val)


def check_sizes(data: RunData, config: TrainConfig, processes: int = 1) -> None:
    """Raises DataError, saying what to lower, when the text cannot fill a step."""
    n = len(data.train.ids)
    if n <= config.context + 1:
        raise DataError(
            f"the training text has {n:,} tokens, too few for --context {config.context}; "
            "use a smaller --context or add works to the corpus"
        )
    rows = config.batch_size * processes
    if config.batching == "stream" and n <= rows * (config.context + 1):
        raise DataError(
            f"the training text has {n:,} tokens, too few for {rows} streams "
            f"(--batch-size {config.batch_size} x {processes} processes) of --context "
            f"{config.context}; lower either"
        )
    if len(data.val.ids) < 2:
        raise DataError("the validation text is empty; add works to the corpus")
