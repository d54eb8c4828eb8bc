"""Models. Each file is self-contained; they share an interface, not layers:
`model(idx (B, T), state) -> (logits (B, T, V), state)`, plus two attributes: `stateful` (training
may carry the state across batches) and `eval_chunk` (tokens per call when validating).

For a batch of texts begun at different times (`sample.Decoding`), each also has
`prefill(idx (1, T), batch_state)` (one text's next scores and state), `join(batch_state, state,
copies)` (that state added as rows) and `keep(batch_state, rows)` (only those rows left).
"""

from __future__ import annotations

from contextlib import contextmanager

from authorgen.config import ModelConfig


def build_model(config: ModelConfig, weights: dict | None = None):
    """The network `config` describes, with freshly initialised weights, or holding `weights`
    (a state dict, e.g. read from a run): then it is built without drawing random weights
    first, which for a 10M-weight transformer takes longer than reading them.

    Raises:
        RuntimeError: when `weights` do not fit the model.
    """
    if config.model == "transformer":
        from authorgen.models.transformer import TransformerLanguageModel as Model
    else:
        from authorgen.models.rnn import RNNLanguageModel as Model
    if weights is None:
        return Model(config)
    with _no_random_init():
        model = Model(config)
    model.load_state_dict(weights, assign=True)  # the tensors read, not copies of them
    return model


@contextmanager
def _no_random_init():
    """While building a model whose weights are about to be replaced: torch.nn.init's
    functions leave tensors as they are (as they are allocated: uninitialised). Not for use
    while another thread builds a model to train."""
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_")]
    saved = {name: getattr(init, name) for name in names}
    try:
        for name in names:
            setattr(init, name, _unchanged)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def _unchanged(tensor, *args, **kwargs):
    return tensor


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
