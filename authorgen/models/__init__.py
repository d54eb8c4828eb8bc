"""Models. Each file is self-contained; they share an interface, not layers:
`model(idx (B, T), state) -> (logits (B, T, V), state)`, plus two attributes: `stateful` (training
may carry the state across batches) and `eval_chunk` (tokens per call when validating).

For a batch of texts begun at different times (`sample.Decoding`), each also has
`prefill(idx (1, T), batch_state)` (one text's next scores and state), `join(batch_state, state,
copies)` (that state added as rows) and `keep(batch_state, rows)` (only those rows left).
"""

from __future__ import annotations

import functools
import threading
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


_building = threading.local()  # .on: this thread builds a model whose weights are replaced
_wrapped = threading.Lock()
_WRAPPED: list[str] = []


@contextmanager
def _no_random_init():
    """While this thread builds a model whose weights are about to be replaced, torch.nn.init's
    functions leave tensors as they are (as they are allocated: uninitialised). Other threads
    (a server's, or one building a model to train) are untouched: the functions are wrapped once
    to look at a flag of the calling thread."""
    _wrap_init()
    _building.on = True
    try:
        yield
    finally:
        _building.on = False


def _wrap_init() -> None:
    import torch.nn.init as init

    with _wrapped:
        if _WRAPPED:
            return
        for name in dir(init):
            if name.endswith("_") and not name.startswith("_"):
                setattr(init, name, _unless_building(getattr(init, name)))
                _WRAPPED.append(name)


def _unless_building(fn):
    @functools.wraps(fn)
    def init_unless_building(tensor, *args, **kwargs):
        if getattr(_building, "on", False):
            return tensor
        return fn(tensor, *args, **kwargs)

    return init_unless_building


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
