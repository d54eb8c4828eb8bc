"""Character-level recurrent language model: Embedding -> SimpleRNN | LSTM | GRU -> Linear.

The network of the course this tool grew from, and of Karpathy's char-rnn:

    idx (B, T) --embedding--> (B, T, E) --L stacked recurrent layers--> (B, T, H)
        --dropout--> --linear--> logits (B, T, V)

It takes and returns its recurrent state, so generation feeds one character at a time and can
run for any length, and evaluation can carry the state along a long text. The layers are
PyTorch's fused kernels (oneDNN on CPU, cuDNN on CUDA), not Python loops over time; except one
token at a time through an LSTM on a CPU without gradients (generation), which is plain matrix
products: oneDNN's LSTM prepares itself at every call, 1.2 ms a token for a 2x256 LSTM where
the products take 0.17 ms (measured on a 2-core AMD EPYC, one thread). Their results differ in
float rounding only (about 1e-8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from authorgen.config import ModelConfig

# state: (h, c) for an LSTM, h for a GRU or SimpleRNN; each (layers, B, hidden)
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNNLanguageModel(nn.Module):
    """Predicts the next token from the ones before it, one recurrent step per token."""

    stateful = True  # training may carry the state from one batch to the next (TBPTT)
    eval_chunk = 256  # tokens per forward call when validating; the state carries the rest

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = _CELLS[config.model](
            input_size=config.embedding_dim,
            hidden_size=config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        if config.tie_weights:
            # The output layer reuses the embedding matrix (Press & Wolf, 2017; Inan et al.,
            # 2017), with a projection when the recurrent layers are wider than the embedding.
            self.project = (
                nn.Linear(config.hidden, config.embedding_dim, bias=False)
                if config.hidden != config.embedding_dim
                else nn.Identity()
            )
            self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        else:
            self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.model == "lstm":
            # Forget-gate bias 1: start by remembering (Jozefowicz et al., 2015). PyTorch orders
            # the gates input, forget, cell, output, and adds bias_ih and bias_hh.
            h = config.hidden
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        param[h : 2 * h].fill_(1.0)

    def forward(
        self, idx: torch.Tensor, state: State | None = None, last: bool = False
    ) -> tuple[torch.Tensor, State]:
        """idx (B, T) token ids -> logits (B, T, V) (with `last`, of the last position only:
        (B, 1, V)) and the state after the last token."""
        x = self.embedding(idx)  # (B, T, E)
        if (
            idx.shape[1] == 1
            and self.config.model == "lstm"
            and x.device.type == "cpu"
            and not self.training
            and not torch.is_grad_enabled()
        ):
            out, state = self._lstm_step(x, state)
        else:
            out, state = self.rnn(x, state)  # (B, T, H)
        out = self.dropout(out[:, -1:] if last else out)
        if self.config.tie_weights:
            return F.linear(self.project(out), self.embedding.weight, self.head_bias), state
        return self.head(out), state

    def _lstm_step(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """One token (x: (B, 1, E)) through the LSTM layers as `nn.LSTM` computes it: gates
        input, forget, cell, output from W_ih x + b_ih + W_hh h + b_hh."""
        layers, hidden = self.config.layers, self.config.hidden
        if state is None:
            zeros = x.new_zeros(layers, x.shape[0], hidden)
            state = (zeros, zeros)
        h0, c0 = state
        out, hs, cs, rnn = x[:, 0], [], [], self.rnn
        for i in range(layers):
            gates = torch.addmm(
                getattr(rnn, f"bias_ih_l{i}"), out, getattr(rnn, f"weight_ih_l{i}").t()
            )
            gates += torch.addmm(
                getattr(rnn, f"bias_hh_l{i}"), h0[i], getattr(rnn, f"weight_hh_l{i}").t()
            )
            in_gate, forget, cell, out_gate = gates.chunk(4, dim=1)
            c = torch.sigmoid(forget) * c0[i] + torch.sigmoid(in_gate) * torch.tanh(cell)
            out = torch.sigmoid(out_gate) * torch.tanh(c)
            hs.append(out)
            cs.append(c)
        return out.unsqueeze(1), (torch.stack(hs), torch.stack(cs))

    # Decoding many texts in one batch, each begun at its own time (the server's engine): a
    # text's prompt is read alone (`prefill`), its state joins the batch's (`join`, once per
    # sample of it) and leaves it when the sample ends (`keep`). The rows of a state are dim 1.

    def prefill(self, idx: torch.Tensor, batch: State | None = None) -> tuple[torch.Tensor, State]:
        """idx (1, T), one text -> the scores of its next token (1, V) and its state."""
        logits, state = self(idx, last=True)
        return logits[:, -1], state

    @staticmethod
    def join(batch: State | None, row: State, copies: int = 1) -> State:
        """The batch's state with `copies` rows of the one-text state `row` after its rows."""
        if isinstance(row, tuple):
            empty = (None,) * len(row) if batch is None else batch
            return tuple(_join(b, r, copies) for b, r in zip(empty, row, strict=True))
        return _join(batch, row, copies)

    @staticmethod
    def keep(batch: State, rows: torch.Tensor) -> State:
        """The state of the batch's `rows` (ids, in order)."""
        if isinstance(batch, tuple):
            return tuple(s.index_select(1, rows) for s in batch)
        return batch.index_select(1, rows)


def _join(batch: torch.Tensor | None, row: torch.Tensor, copies: int) -> torch.Tensor:
    rows = row.expand(-1, copies, -1)  # (layers, copies, hidden)
    return rows.contiguous() if batch is None else torch.cat((batch, rows), dim=1)


def detach_state(state: State) -> State:
    """Cut the graph at a window boundary (truncated backpropagation through time)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
