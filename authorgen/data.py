"""Token ids on disk, and batches read from them.

Encoding streams the text in chunks into a flat file of uint16 ids (uint32 above 65,536 tokens),
read back as a numpy memmap, so memory does not grow with the corpus: a batch copies only its
own windows. Both the tokenizer and the ids are cached, keyed by what determines them:

    {cache}/tokenizers/<hash of text fingerprint + tokenizer config>/tokenizer.json (.model)
    {cache}/tokens/<hash of text fingerprint + tokenizer fingerprint>/
        meta.json  train.bin  val.bin

so a second run on the same corpus and tokenizer starts at once.

Training reads the ids in one of two ways, both driven by an explicit `torch.Generator` so a
seed fixes the batches:
- "stream" (stateful truncated BPTT, char-rnn's way): the text is cut into `batch_size`
  contiguous streams read `context` tokens at a time, and the model's state carries over from
  one batch to the next, so every prediction sees a long past;
- "windows": independent windows at uniform random positions, each starting from a zero state.
Evaluation walks the whole text once as parallel contiguous streams, so every token is
predicted exactly once and a recurrent model can carry its state along.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from authorgen.config import TokenizerConfig
from authorgen.corpus import CHUNK_CHARS, Split, read_chunks
from authorgen.errors import DataError
from authorgen.files import atomic_write_json, staged_dir, utc_now
from authorgen.tokenizer import Tokenizer, load_tokenizer, train_tokenizer

IGNORE = -100  # target id that cross_entropy skips (padding of the last stream)
FORMAT = 1  # of the cached ids; bump to ignore old cache entries
_STAGED = f".tmp{os.getpid()}"  # cache entries are staged per process: several may build one


@dataclass
class TokenIds:
    """The ids of one text (a memmap), with the character counts losses are divided by."""

    ids: np.ndarray
    chars: int  # characters of the text the ids encode
    first_token_chars: int  # characters the first token covers (it is never predicted)
    unk: int  # ids that are <unk>

    @property
    def predicted_chars(self) -> int:
        """Characters covered by the tokens after the first: the denominator of the loss."""
        return self.chars - self.first_token_chars


@dataclass
class EncodedSplit:
    train: TokenIds
    val: TokenIds
    folder: Path
    reused: bool  # found in the cache


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def prepare_tokenizer(
    split: Split, config: TokenizerConfig, cache_dir: Path, seed: int = 0
) -> tuple[Tokenizer, bool]:
    """The tokenizer `config` describes, trained on `split.train`, or the cached one.

    Returns:
        The tokenizer and whether it came from the cache.
    """
    spec = json.dumps(config.to_dict(), sort_keys=True)
    folder = Path(cache_dir) / "tokenizers" / _key(split.fingerprint, spec, str(seed))
    if (folder / "tokenizer.json").is_file():
        try:
            return load_tokenizer(folder), True
        except DataError:
            pass  # a damaged cache entry is made again
    tokenizer = train_tokenizer(config, read_chunks(split.train), seed)
    with staged_dir(folder, _STAGED) as staged:
        tokenizer.save(staged)
    return tokenizer, False


def encode_split(split: Split, tokenizer: Tokenizer, cache_dir: Path) -> EncodedSplit:
    """The token ids of both halves of `split`, from the cache or freshly encoded into it."""
    folder = (
        Path(cache_dir) / "tokens" / _key(str(FORMAT), split.fingerprint, tokenizer.fingerprint())
    )
    found = _open_cached(folder)
    if found is not None:
        return EncodedSplit(*found, folder, True)
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    # Ctrl-C or a full disk: nothing half-written is left in the cache
    with staged_dir(folder, _STAGED) as staged:
        meta = {
            "format": FORMAT,
            "created": utc_now(),
            "dtype": np.dtype(dtype).name,
            "text": split.fingerprint,
            "tokenizer": tokenizer.fingerprint(),
            "train": encode_to_file(
                tokenizer, read_chunks(split.train), staged / "train.bin", dtype
            ),
            "val": encode_to_file(tokenizer, read_chunks(split.val), staged / "val.bin", dtype),
        }
        atomic_write_json(staged / "meta.json", meta)  # written last: its presence means complete
    found = _open_cached(folder)
    if found is None:
        raise DataError(f"the token cache {folder} could not be read back; check the disk")
    return EncodedSplit(*found, folder, False)


def _open_cached(folder: Path) -> tuple[TokenIds, TokenIds] | None:
    """Both halves of a complete cache entry, or None when it is missing or damaged."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        halves = []
        for name in ("train", "val"):
            info, path = meta[name], folder / f"{name}.bin"
            if path.stat().st_size != info["tokens"] * dtype.itemsize:
                return None
            ids = np.memmap(path, dtype, mode="r") if info["tokens"] else np.zeros(0, dtype)
            halves.append(TokenIds(ids, info["chars"], info["first_token_chars"], info["unk"]))
        return halves[0], halves[1]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def encode_to_file(tokenizer: Tokenizer, chunks: Iterable[str], path: Path, dtype) -> dict:
    """Encode a text arriving in chunks into a flat file of ids; returns its counts.

    Each chunk is cut where the tokenizer allows (`safe_cut`), the rest carried into the next,
    so the ids equal those of the whole text encoded at once.
    """
    tokens = chars = unk = 0
    first_token_chars = None
    carry = ""
    with open(path, "wb") as f:
        for chunk in itertools.chain(chunks, [None]):
            if chunk is None:
                text, cut = carry, len(carry)
            else:
                chars += len(chunk)
                text = carry + chunk
                cut = tokenizer.safe_cut(text)
                if cut == 0 and len(text) > 4 * CHUNK_CHARS:
                    cut = len(text)  # no safe place in 4 MB: an approximation is better than RAM
            if not cut:
                carry = text
                continue
            piece, carry = text[:cut], text[cut:]
            if first_token_chars is None:
                first_token_chars = tokenizer.first_token_chars(piece)
            ids = tokenizer.encode_array(piece)
            tokens += len(ids)
            unk += int(np.count_nonzero(ids == tokenizer.unk_id))
            f.write(ids.astype(dtype).tobytes())
        f.flush()
        os.fsync(f.fileno())
    return {
        "tokens": tokens,
        "chars": chars,
        "first_token_chars": first_token_chars or 0,
        "unk": unk,
    }


def _windows(ids: np.ndarray, starts: np.ndarray, width: int) -> torch.Tensor:
    """Rows ids[s : s + width] for each start, copied out of the memmap as int64."""
    return torch.from_numpy(ids[starts[:, None] + np.arange(width)].astype(np.int64))


def random_windows(
    ids: np.ndarray, batch_size: int, context: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows of `context + 1` tokens as inputs x (B, T) and targets y (B, T).

    `ids` is a 1-D array (a memmap) with more than `context` tokens.
    """
    starts = torch.randint(0, len(ids) - context, (batch_size,), generator=generator).numpy()
    windows = _windows(ids, starts, context + 1)  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


class StreamBatches:
    """Stateful truncated-BPTT batches: row r of every batch continues row r of the last one.

    Each pass over the text starts at a random offset below `context`, so window boundaries
    move between passes; `reset` is True on the first batch of a pass (drop the carried state).
    """

    def __init__(self, ids: np.ndarray, batch_size: int, context: int, generator: torch.Generator):
        self.ids, self.batch_size, self.context, self.generator = (
            ids,
            batch_size,
            context,
            generator,
        )
        self.length = (len(ids) - 1) // batch_size  # tokens per stream
        if self.length <= context:
            raise ValueError("text too short for batch_size x context")
        self.pos = self.length  # forces a new pass on the first call
        self.offset = 0
        self.passes = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Inputs x (B, T), targets y (B, T), and whether this batch starts a new pass."""
        reset = self.pos + self.context > self.length
        if reset:
            self.offset = int(torch.randint(0, self.context, (1,), generator=self.generator))
            self.pos = self.offset
            self.passes += 1
        starts = np.arange(self.batch_size) * self.length + self.pos
        windows = _windows(self.ids, starts, self.context + 1)  # (B, T + 1)
        self.pos += self.context
        return windows[:, :-1], windows[:, 1:], reset

    def state_dict(self) -> dict:
        return {"pos": self.pos, "offset": self.offset, "passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.offset, self.passes = state["pos"], state["offset"], state["passes"]


def eval_streams(
    ids: np.ndarray, n_streams: int, context: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The text as `n_streams` contiguous rows, yielded `context` columns at a time.

    Row r holds inputs ids[r*L : (r+1)*L] and their targets one token later, L = ceil((N-1)/S);
    the last row is padded with targets IGNORE. Carry the model state from one chunk to the next.
    """
    n = len(ids) - 1  # tokens predicted
    n_streams = max(1, min(n_streams, n))
    length = -(-n // n_streams)
    rows = np.arange(n_streams)[:, None] * length
    for t in range(0, length, context):
        at = rows + np.arange(t, min(t + context, length))  # (S, w) input positions
        valid = torch.from_numpy(at < n)
        at = np.minimum(at, n - 1)
        x = torch.from_numpy(ids[at].astype(np.int64))
        y = torch.from_numpy(ids[at + 1].astype(np.int64))
        yield x.masked_fill(~valid, 0), y.masked_fill(~valid, IGNORE)
