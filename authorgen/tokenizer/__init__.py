"""Tokenizers: characters, words, or subwords (sentencepiece BPE or unigram).

All share one interface, so the rest of the tool never asks which one it holds:

    encode(text) -> list[int]         encode_array(text) -> numpy ids (fast path for corpora)
    decode(ids) -> str                decoder(prefix) -> incremental: push, banned, flush, clone
    unknown(text) -> what the vocabulary lacks     special_ids: ids never to sample
    safe_cut(text) -> where a long text can be cut into pieces that encode independently
    save(folder) / load_tokenizer(folder)          fingerprint(): a hash of what was saved

- char: Unicode code points of NFC text, the vocabulary from the training split. A character
  only the validation text has becomes `<unk>` (the last id), so validation honestly pays for it;
  generation never produces it, and a prompt with such a character is refused.
- word: words (letters with inner apostrophes), single digits and single punctuation marks, plus
  the newline; the `vocab_size - 1` most frequent are kept and the rest read as `<unk>` (id 0).
  Spaces are not tokens: decoding puts them back by rules learned from the training text (which
  marks attach to the word before or after, which quotes open and close), and with `lowercase`
  it restores each word's usual capitalisation and capitals at sentence starts.
- bpe / unigram: sentencepiece, set up so that any text round-trips exactly: identity
  normalisation, no dummy prefix, whitespace kept as is, the newline a piece of its own, and byte
  fallback for characters outside the vocabulary. Decoding maps pieces to bytes, so streaming
  never prints half a character.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from authorgen.config import TokenizerConfig
from authorgen.errors import DataError
from authorgen.tokenizer.base import FILENAME, UNK_TEXT
from authorgen.tokenizer.char import CharTokenizer
from authorgen.tokenizer.pretrained import HF_FILENAME, PretrainedTokenizer
from authorgen.tokenizer.subword import SPM_FILENAME, SentencePieceTokenizer
from authorgen.tokenizer.word import WordTokenizer

__all__ = [
    "UNK_TEXT",
    "CharTokenizer",
    "PretrainedTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "load_tokenizer",
    "train_tokenizer",
]

Tokenizer = CharTokenizer | WordTokenizer | SentencePieceTokenizer | PretrainedTokenizer


def train_tokenizer(config: TokenizerConfig, chunks: Iterable[str], seed: int = 0) -> Tokenizer:
    """A tokenizer of `config.kind` trained on the text (given as an iterable of chunks).

    Raises:
        DataError: when the text is empty.
        UsageError: when the vocabulary size cannot be reached on this text.
    """
    if config.kind == "char":
        return CharTokenizer.train(chunks)
    if config.kind == "word":
        return WordTokenizer.train(chunks, config.vocab_size, config.lowercase)
    return SentencePieceTokenizer.train(config.kind, chunks, config.vocab_size, seed)


def load_tokenizer(folder: Path) -> Tokenizer:
    """The tokenizer saved in `folder` (a run directory or a cache entry).

    Raises:
        DataError: when its files are missing or damaged.
    """
    path = Path(folder) / FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kind = data.get("kind")
        if kind == "char":
            return CharTokenizer(data["chars"])
        if kind == "word":
            return WordTokenizer(
                data["tokens"],
                data["lowercase"],
                data["attach_left"],
                data["attach_right"],
                data["toggles"],
                data["casing"],
                data["capitalize_lines"],
            )
        if kind in ("bpe", "unigram"):
            return SentencePieceTokenizer(kind, (Path(folder) / SPM_FILENAME).read_bytes())
        if kind == "pretrained":
            hf = (Path(folder) / HF_FILENAME).read_bytes()
            return PretrainedTokenizer(hf, data["vocab_size"])
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is missing or damaged ({exc}); train the run again") from None
