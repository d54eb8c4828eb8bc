"""A small decoder-only transformer (GPT), self-contained:

    idx (B, T) --embedding--> (B, T, E) --L blocks--> --LayerNorm--> --tied head--> logits (B, T, V)
    block: x + attention(LayerNorm(x)) then x + MLP(LayerNorm(x))   (pre-norm)

- Positions are rotary embeddings (RoPE, Su et al. 2021) applied to queries and keys, so
  attention depends only on how far apart two tokens are. No learned position table: the model
  can slide over a text longer than its training context.
- Attention is `F.scaled_dot_product_attention` (flash / memory-efficient kernels where the
  device has them).
- The output head reuses the embedding matrix (tied embeddings, Press & Wolf 2017).
- The "state" of the shared model interface is a KV cache: `model(idx, state)` appends the new
  tokens' keys and values, so generation costs one token's work per step. The cache keeps at
  most `context` positions: older ones slide out (each token still sees `context - 1` before it).
- One token at a time (generation), the cache is a ring: a buffer of `context` slots per layer,
  written in place at slot (position - base) % context. A single query may attend to its keys in
  any order (the positions are in the keys already), so no mask and no copy is needed; this
  step is about a fifth faster than growing the cache with `torch.cat`. The ring is written in
  place: the state passed in is the state returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from authorgen.config import ModelConfig


@dataclass
class KVCache:
    """Keys and values (B, H, S, D) of every layer for the last S positions, and the position
    the next token will have.

    As a ring (`ring`: set by one-token steps), keys and values are (B, H, context, D) buffers
    of which slots [0, filled) are in use, position p in slot (p - base) % context.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    position: int = 0
    ring: bool = False
    base: int = 0
    filled: int = 0

    def to_ring(self, context: int) -> None:
        """Move the last context - 1 positions into ring buffers (slot 0 for the oldest)."""
        if self.ring:
            return
        kept = min(self.keys[0].shape[2], context - 1)
        for layer in (self.keys, self.values):
            for i, cached in enumerate(layer):
                B, H, _, D = cached.shape
                buffer = cached.new_empty(B, H, context, D)
                buffer[:, :, :kept] = cached[:, :, cached.shape[2] - kept :]
                layer[i] = buffer
        self.ring, self.base, self.filled = True, self.position - kept, kept

    def to_list(self) -> None:
        """Back from a ring to positions in order (for a step of several tokens)."""
        if not self.ring:
            return
        context = self.keys[0].shape[2]
        oldest = (self.position - self.base) % context if self.filled == context else 0
        for layer in (self.keys, self.values):
            for i, buffer in enumerate(layer):
                used = buffer[:, :, : self.filled]
                layer[i] = torch.cat((used[:, :, oldest:], used[:, :, :oldest]), dim=2)
        self.ring = False

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Put one position's k, v (B, H, 1, D) in its slot; the keys and values in use."""
        slot = (self.position - self.base) % self.keys[layer].shape[2]
        self.keys[layer][:, :, slot : slot + 1] = k
        self.values[layer][:, :, slot : slot + 1] = v
        used = max(self.filled, slot + 1)
        return self.keys[layer][:, :, :used], self.values[layer][:, :, :used]


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i + D/2}) of x (B, H, T, D) by each position's angles (T, D/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.embedding_dim, 3 * config.embedding_dim, bias=False)
        self.out = nn.Linear(config.embedding_dim, config.embedding_dim, bias=False)
        self.dropout = config.dropout

    def forward(self, x, cos, sin, past, keep: int):
        """x (B, T, E); `past` keys/values from the cache, of which the last `keep` are used, or
        (ring cache, layer) for a one-token step.

        Returns the output (B, T, E) and the keys and values to cache.
        """
        B, T, E = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, E // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        mask, causal = None, True
        if isinstance(past, tuple) and isinstance(past[0], KVCache):
            k, v = past[0].write(past[1], k, v)
            causal = False  # one query, every key before it: no mask, in any order
        elif past is not None and keep > 0:
            k = torch.cat((past[0][:, :, -keep:], k), dim=2)
            v = torch.cat((past[1][:, :, -keep:], v), dim=2)
            causal = False  # queries start `keep` positions in: an explicit mask
            mask = torch.ones(T, keep + T, dtype=torch.bool, device=x.device).tril(keep)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal and T > 1,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(B, T, E)), (k, v)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embedding_dim, bias=False)
        self.attention = Attention(config)
        self.norm2 = nn.LayerNorm(config.embedding_dim, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(config.embedding_dim, config.hidden, bias=False),
            nn.GELU(),
            nn.Linear(config.hidden, config.embedding_dim, bias=False),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, past, keep):
        y, kv = self.attention(self.norm1(x), cos, sin, past, keep)
        x = x + self.dropout(y)
        return x + self.dropout(self.mlp(self.norm2(x))), kv


class TransformerLanguageModel(nn.Module):
    """Predicts each next token from up to `context - 1` tokens before it."""

    stateful = False  # training windows are independent; the state is only a generation cache
    ring_cache = True  # one-token steps write into a ring buffer in place (False: torch.cat)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.context = config.context
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.embedding_dim, bias=False)
        head_dim = config.embedding_dim // config.heads
        inv_freq = 1.0 / (10_000 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 L)
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                std = 0.02
                if name.endswith(("attention.out.weight", "mlp.2.weight")):
                    std /= math.sqrt(2 * config.layers)
                nn.init.normal_(param, mean=0.0, std=std)

    # Evaluation feeds the text in chunks of half the context, so every token is predicted from
    # at least context/2 and up to context - 1 tokens before it.
    @property
    def eval_chunk(self) -> int:
        return max(1, self.context // 2)

    def _angles(self, start: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        # float64 angles: exact enough for positions far beyond the training context
        positions = torch.arange(start, start + length, dtype=torch.float64, device=device)
        angles = torch.outer(positions, self.inv_freq.to(device))
        dtype = self.embedding.weight.dtype
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(
        self, idx: torch.Tensor, state: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """idx (B, T) -> logits (B, T, V) and the cache after the last token.

        Without a state this is a plain causal pass (training). With one, the new tokens
        attend to the cached positions too. Inputs longer than the context are fed in pieces.
        """
        T = idx.shape[1]
        if self.context < T:
            logits = []
            for i in range(0, T, self.eval_chunk):
                piece, state = self(idx[:, i : i + self.eval_chunk], state)
                logits.append(piece)
            return torch.cat(logits, dim=1), state
        start = state.position if state is not None else 0
        cos, sin = self._angles(start, T, idx.device)
        x = self.dropout(self.embedding(idx))
        if state is not None and T == 1 and self.ring_cache:
            state.to_ring(self.context)
            for i, block in enumerate(self.blocks):
                x, _ = block(x, cos, sin, (state, i), 0)
            state.position += 1
            state.filled = min(state.filled + 1, self.context)
            return F.linear(self.norm(x), self.embedding.weight), state
        if state is not None:
            state.to_list()
        keep = min(state.keys[0].shape[2], self.context - T) if state is not None else 0
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = (state.keys[i], state.values[i]) if state is not None else None
            x, (k, v) = block(x, cos, sin, past, keep)
            keys.append(k)
            values.append(v)
        logits = F.linear(self.norm(x), self.embedding.weight)
        return logits, KVCache(keys, values, start + T)
