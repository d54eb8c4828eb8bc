"""Models. Each file is self-contained; they share an interface, not layers:
`model(idx (B, T), state) -> (logits (B, T, V), state)`, plus two attributes: `stateful` (training
may carry the state across batches) and `eval_chunk` (tokens per call when validating).

For a batch of texts begun at different times (`sample.Decoding`), each also has
`prefill(idx (1, T), batch_state)` (one text's next scores and state), `join(batch_state, state,
copies)` (that state added as rows) and `keep(batch_state, rows)` (only those rows left).
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
