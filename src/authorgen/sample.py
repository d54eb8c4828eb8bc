"""Sampling: turn a model's logits into text, one token at a time, as a stream.

`sample_next` knows nothing of models; `generate` knows nothing of the screen. The seed fixes
the text: each sample draws from its own `torch.Generator`, seeded `seed + i` for sample i, so
sample i is the same whether it is generated alone or among others.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from authorgen.clean import normalize
from authorgen.config import SampleConfig
from authorgen.errors import DataError


def sample_next(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Next ids (B,) from logits (B, V): greedy at temperature 0, else softmax(logits / T) draws."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def generate(
    model,
    tokenizer,
    prompt: str,
    config: SampleConfig,
    seed: int,
    device: torch.device | str = "cpu",
) -> Iterator[str]:
    """An iterator over the continuation of `prompt`, piece by piece, `config.length` characters.

    Without a prompt the model starts as at the beginning of a paragraph (after a newline).
    The prompt is checked here, before anything is generated. Pieces are whole characters:
    subword bytes are held back until they complete one.

    Raises:
        DataError: when the prompt has characters a char model never saw.
    """
    prompt = normalize(prompt)  # NFC and LF, as the training text was
    ids = tokenizer.encode_prompt(prompt) if prompt else tokenizer.start_ids()
    if not ids:
        raise DataError("the prompt is empty after encoding; give some text")
    decoder = tokenizer.decoder(prompt)
    return _stream(model, tokenizer, decoder, ids, config, seed, torch.device(device))


@torch.no_grad()
def _stream(
    model, tokenizer, decoder, ids: list[int], config: SampleConfig, seed: int, device: torch.device
) -> Iterator[str]:
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    logits, state = model(torch.tensor([ids], device=device))
    produced = 0
    while produced < config.length:
        last = logits[:, -1, :].float().cpu()
        last[:, tokenizer.special_ids] = -float("inf")  # never emit <unk> or control pieces
        last[:, decoder.banned()] = -float("inf")  # nor broken UTF-8 from byte pieces
        next_id = sample_next(last, config.temperature, generator)
        piece = decoder.push(int(next_id))
        if piece:
            produced += len(piece)
            yield piece
        logits, state = model(next_id.view(1, 1).to(device), state)
    tail = decoder.flush()
    if tail:
        yield tail
