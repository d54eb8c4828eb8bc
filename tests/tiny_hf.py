"""Tiny models of the pretrained families authorgen reads, built with `transformers` (random
weights of small shapes) beside a byte-level BPE tokenizer trained on Alice, saved as
`save_pretrained` saves them."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from authorgen.tokenizer.pretrained import _byte_of_char
from helpers import data_file

ALICE = data_file("pg11-alices-adventures-in-wonderland.txt").read_text(encoding="utf-8")


def tokenizer(folder: Path):
    """A byte-level BPE tokenizer of 400 tokens trained on Alice, saved in `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator([ALICE], trainer)
    tok.save(str(folder / "tokenizer.json"))
    return tok


def random_model(family: str, vocab: int):
    """A `transformers` model of `family` with random weights of small shapes."""
    shapes = {"vocab_size": vocab, "hidden_size": 64, "num_hidden_layers": 2}
    shapes.update(num_attention_heads=4, max_position_embeddings=128, initializer_range=0.3)
    if family == "llama":  # grouped-query attention, tied output, another rotary base
        config = transformers.LlamaConfig(
            **shapes, intermediate_size=96, num_key_value_heads=2, tie_word_embeddings=True,
            rope_theta=100_000.0,
        )  # fmt: skip
        return transformers.LlamaForCausalLM(config)
    if family == "gpt2":  # learned positions, Conv1D weights, GELU tanh, tied output
        gpt2 = {"vocab_size": vocab, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128}
        config = transformers.GPT2Config(**gpt2, initializer_range=0.3, bos_token_id=0,
                                         eos_token_id=0)  # fmt: skip
        return transformers.GPT2LMHeadModel(config)
    config = transformers.GPTNeoXConfig(**shapes, intermediate_size=128, rotary_pct=0.25)
    return transformers.GPTNeoXForCausalLM(config)  # partial rotary, parallel residual, biases


def hf_folder(family: str, folder: Path):
    """(the transformers model, its tokenizer), saved in `folder` as a Hugging Face folder of a
    tiny model of `family`; 12 embedding rows more than the tokenizer has, as Pythia pads its
    vocabulary."""
    tok = tokenizer(folder)
    torch.manual_seed(0)
    model = random_model(family, tok.get_vocab_size() + 12).eval()
    # Greedy decoding of random weights picks bytes that are part of a character, which
    # authorgen never writes (they would break UTF-8), and special tokens: their output rows are
    # zero, so both pick among the same tokens
    byte = _byte_of_char()
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        for i in range(head.shape[0]):
            token = tok.id_to_token(i)
            if token is None or token.startswith("<|") or any(byte[c] >= 0x80 for c in token):
                head[i] = 0
    model.save_pretrained(folder)
    return model, tok
