"""Models. Each file is self-contained; they share an interface, not layers:
`model(idx (B, T), state) -> (logits (B, T, V), state)`, plus two attributes: `stateful` (training
may carry the state across batches) and `eval_chunk` (tokens per call when validating).
"""

from __future__ import annotations

from authorgen.config import ModelConfig


def build_model(config: ModelConfig):
    """The network `config` describes, with freshly initialised weights."""
    if config.model == "transformer":
        from authorgen.models.transformer import TransformerLanguageModel

        return TransformerLanguageModel(config)
    from authorgen.models.rnn import RNNLanguageModel

    return RNNLanguageModel(config)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
