"""A small decoder-only transformer (GPT), self-contained:

    idx (B, T) --embedding--> (B, T, E) --L blocks--> --LayerNorm--> --tied head--> logits (B, T, V)
    block: x + attention(LayerNorm(x)) then x + MLP(LayerNorm(x))   (pre-norm)

- Positions are rotary embeddings (RoPE, Su et al. 2021) applied to queries and keys, so
  attention depends only on how far apart two tokens are. No learned position table: the model
  can slide over a text longer than its training context. (GPT-2's learned table is a
  `Variant`: a text read past its end starts a new window, `_reread`.)
- Attention is `F.scaled_dot_product_attention` (flash / memory-efficient kernels where the
  device has them).
- The output head reuses the embedding matrix (tied embeddings, Press & Wolf 2017).
- Pretrained families (Llama, GPT-NeoX, GPT-2: `families.py`) are the same model with a
  `Variant`: RMSNorm, a SwiGLU MLP, grouped-query attention, rotary angles on part of each
  head, learned positions, a parallel residual, biases, an output layer of its own. The
  defaults are authorgen's own.
- The "state" of the shared model interface is a `KVCache`: `model(idx, state)` attends to the
  cached keys and values as well as the new tokens', so generation costs one token's work per
  step. The cache spans at most `context` positions: older ones slide out, so a token sees at
  most `context - 1` before it, at every layer, however long the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from authorgen.config import ModelConfig
from authorgen.models.cache import BatchCache, KVCache


@dataclass(frozen=True)
class Variant:
    """How a pretrained family's transformer differs from authorgen's own (the defaults)."""

    kv_heads: int | None = None  # heads of keys and values, shared by groups of query heads
    norm: str = "layer"  # layer (LayerNorm) | rms (RMSNorm)
    norm_bias: bool = False
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # gelu (exact) | gelu_tanh (GPT-2's) | swiglu (down(silu(gate(x)) * up(x)))
    bias: bool = False  # the attention's and the MLP's linear layers have biases
    rotary_fraction: float = 1.0  # the share of each head's dimensions rotated (NeoX: 0.25)
    rope_theta: float = 10_000.0
    parallel: bool = False  # x + attention(norm1(x)) + mlp(norm2(x)) (GPT-NeoX)
    tied: bool = True  # the output layer is the embedding matrix
    positions: str = "rotary"  # rotary | learned (GPT-2: a table of `context` vectors, added)

    def __post_init__(self) -> None:
        known = self.norm in ("layer", "rms") and self.positions in ("rotary", "learned")
        if not known or self.mlp not in ("gelu", "gelu_tanh", "swiglu"):
            raise ValueError(f"unknown norm, MLP or positions in {self}")


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i + R/2}) of the first R dimensions of x (B, H, T, D) by each
    position's angles (T, R/2); the other D - R dimensions pass as they are."""
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest), dim=-1)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in fp32 (as Llama's)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


def norm(config: ModelConfig, variant: Variant) -> nn.Module:
    if variant.norm == "rms":
        return RMSNorm(config.embedding_dim, variant.norm_eps)
    return nn.LayerNorm(config.embedding_dim, eps=variant.norm_eps, bias=variant.norm_bias)


class Attention(nn.Module):
    """Multi-head causal self-attention, its keys and values kept in the cache."""

    def __init__(self, config: ModelConfig, variant: Variant):
        super().__init__()
        self.heads = config.heads
        self.kv_heads = variant.kv_heads or config.heads
        E, D = config.embedding_dim, config.embedding_dim // config.heads
        self.qkv = nn.Linear(E, E + 2 * self.kv_heads * D, bias=variant.bias)
        self.out = nn.Linear(E, E, bias=variant.bias)
        self.dropout = config.dropout
        # one query at a time (generation) as three plain operations, not the fused kernel,
        # which costs more to start than a single query's work; rounds differently from it
        self.plain_decode = False

    def forward(self, x, cos, sin, cache: KVCache, layer: int) -> torch.Tensor:
        """x (B, T, E) -> (B, T, E), attending to the cached positions and the causal past."""
        B, T, E = x.shape
        H, G, D = self.heads, self.kv_heads, E // self.heads
        # (B, T, E + 2 G D) -> queries (B, H, T, D), keys and values (B, G, T, D) per head
        q, k, v = self.qkv(x).split((E, G * D, G * D), dim=-1)
        q, k, v = (t.view(B, T, -1, D).transpose(1, 2) for t in (q, k, v))
        if cos.shape[-1]:  # rotary positions (learned ones were added to the input)
            q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        k, v, mask = cache.attend(layer, k, v)  # (B, G, S, D), S = cached kept + T
        if G != H:  # each group of H / G query heads shares one head of keys and values
            k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
        if self.plain_decode and T == 1:
            y = _one_query_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None and T > 1,
                dropout_p=self.dropout if self.training else 0.0,
            )  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, E))  # heads side by side: (B, T, E)


class Int8Linear(nn.Module):
    """A linear layer for generation on a CPU: each output row's weights as int8 with
    one bf16 scale (the row's largest magnitude / 127), multiplied by PyTorch's weight-only int8
    kernel. A token reads a quarter of the bytes fp32 weights take; the outputs differ from
    fp32 by about 1% of their scale, well inside what sampling at temperature draws from."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = linear.bias  # kept as it is, or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(rows, self.weight, self.scale)
        y = y.reshape(*x.shape[:-1], -1).to(x.dtype)
        return y if self.bias is None else y + self.bias


def _one_query_attention(q, k, v, mask):
    """Attention of one query per row, q (B, H, 1, D) over k, v (B, H, S, D)."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, 1, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _int8_if_exact_enough(linear: nn.Linear) -> nn.Module:
    """`linear` as an `Int8Linear` where PyTorch's kernel handles its shape (both sizes
    multiples of 64), else `linear` itself: the kernel reads out of bounds on some small shapes
    (8 or 24 inputs gave garbage, and a crash)."""
    if linear.in_features % 64 or linear.out_features % 64:
        return linear
    return Int8Linear(linear)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig, variant: Variant):
        super().__init__()
        self.fc = nn.Linear(config.embedding_dim, config.mlp_dim, bias=variant.bias)
        # SwiGLU: a second projection gates the first through SiLU
        swiglu = variant.mlp == "swiglu"
        self.gate = nn.Linear(config.embedding_dim, config.mlp_dim, bias=False) if swiglu else None
        self.gelu = nn.GELU(approximate="tanh" if variant.mlp == "gelu_tanh" else "none")
        self.proj = nn.Linear(config.mlp_dim, config.embedding_dim, bias=variant.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, E) -> (B, T, mlp_dim) -> (B, T, E)
        if self.gate is not None:
            return self.proj(F.silu(self.gate(x)) * self.fc(x))
        return self.proj(self.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, variant: Variant):
        super().__init__()
        self.norm1 = norm(config, variant)
        self.attention = Attention(config, variant)
        self.norm2 = norm(config, variant)
        self.mlp = MLP(config, variant)
        self.dropout = nn.Dropout(config.dropout)
        self.parallel = variant.parallel

    def forward(self, x, cos, sin, cache: KVCache, layer: int) -> torch.Tensor:
        attended = self.dropout(self.attention(self.norm1(x), cos, sin, cache, layer))
        if self.parallel:  # both read x; their sum is added
            return x + attended + self.dropout(self.mlp(self.norm2(x)))
        x = x + attended
        return x + self.dropout(self.mlp(self.norm2(x)))


# Runs saved before the MLP's layers had names called them by their index in an nn.Sequential.
_OLD_NAMES = {".mlp.0.": ".mlp.fc.", ".mlp.2.": ".mlp.proj."}


def _rename_old_weights(state_dict, prefix, *args) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        for old, new in _OLD_NAMES.items():
            if old in key:
                state_dict[key.replace(old, new)] = state_dict.pop(key)


class TransformerLanguageModel(nn.Module):
    """Predicts each next token from up to `context - 1` tokens before it."""

    stateful = False  # training windows are independent; the state is only a generation cache
    ring_cache = True  # one-token steps write into a ring buffer in place (False: torch.cat)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.context = config.context
        variant = Variant(**(config.variant or {}))
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, variant) for _ in range(config.layers))
        self.norm = norm(config, variant)
        self.head = (
            None if variant.tied else nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        )
        # learned positions (GPT-2): one vector per position of the window, added to the input
        learned = variant.positions == "learned"
        self.positions = nn.Embedding(config.context, config.embedding_dim) if learned else None
        fraction = 0.0 if learned else variant.rotary_fraction
        rotated = int(config.embedding_dim // config.heads * fraction)
        # computed on the CPU even when the model is built on the meta device to be loaded
        steps = torch.arange(0, rotated, 2, dtype=torch.float64, device="cpu")
        inv_freq = 1.0 / (variant.rope_theta ** (steps / rotated))
        # (D/2,) float64 on the host, not a buffer: a model moved to an Apple GPU (no float64)
        # leaves it here, and the angles are computed here (`_angles`)
        self.inv_freq = inv_freq
        # GPT-2 initialisation: N(0, 0.02), the projections back into the residual stream
        # scaled by 1/sqrt(2 L) since L blocks add to it twice each
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                residual = name.endswith(("attention.out.weight", "mlp.proj.weight"))
                std = 0.02 / math.sqrt(2 * config.layers) if residual else 0.02
                nn.init.normal_(param, mean=0.0, std=std)
        self._register_load_state_dict_pre_hook(_rename_old_weights)

    # Evaluation feeds the text in chunks of half the context, so every token is predicted from
    # at least context/2 and up to context - 1 tokens before it.
    @property
    def eval_chunk(self) -> int:
        return max(1, self.context // 2)

    def _angles(self, start: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (T, D/2) of positions start .. start + length - 1."""
        # float64 angles, on the host: exact enough for positions far beyond the training
        # context, on any device
        positions = torch.arange(start, start + length, dtype=torch.float64, device="cpu")
        angles = torch.outer(positions, self.inv_freq)
        dtype = self.embedding.weight.dtype
        return angles.cos().to(dtype).to(device), angles.sin().to(dtype).to(device)

    def forward(
        self, idx: torch.Tensor, state: KVCache | None = None, last: bool = False
    ) -> tuple[torch.Tensor, KVCache]:
        """idx (B, T) -> logits (B, T, V) (with `last`, of the last position only: (B, 1, V))
        and the cache after the last token.

        Without a state this is a plain causal pass (training). With one, the new tokens
        attend to the cached positions too. Inputs longer than the context are fed in pieces.
        """
        T = idx.shape[1]
        if self.context < T:
            logits = []
            for i in range(0, T, self.eval_chunk):
                piece, state = self(idx[:, i : i + self.eval_chunk], state, last)
                logits.append(piece)
            return (logits[-1] if last else torch.cat(logits, dim=1)), state
        cache = state if state is not None else KVCache(self.context, ring=self.ring_cache)
        if self.positions is not None and state is not None:
            self._reread(cache, T)
        return self._step(idx, cache, last)

    def _step(self, idx: torch.Tensor, cache, last: bool) -> tuple[torch.Tensor, KVCache]:
        """The forward pass of idx (B, T), T <= context, after the `cache`."""
        T = idx.shape[1]
        cos, sin = self._angles(cache.position, T, idx.device)
        x = self.embedding(idx)  # (B, T, E)
        if self.positions is not None:  # each row's own positions in its window: (B or 1, T)
            x = x + self.positions(cache.window_positions(T, idx.device))
            cache.record(idx)
        x = self.dropout(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer)
        cache.advance(T)
        x = x[:, -1:] if last else x
        head = self.embedding.weight if self.head is None else self.head.weight  # tied or not
        return F.linear(self.norm(x), head), cache  # (B, T, V)

    def _reread(self, cache: KVCache | BatchCache, T: int) -> None:
        """Learned positions end at the table's end (`context`): a row whose next T tokens
        would pass it reads its last tokens again, from position 0 of a new window (half the
        context, or what leaves room for the T), and goes on from there."""
        rows = cache.full_rows(T)
        if rows is None:
            return
        kept = min(self.context // 2, self.context - T)
        ids = cache.last_ids(rows, kept)  # (R, kept)
        window = KVCache(self.context, position=cache.position - kept, ring=False)
        if kept:
            self._step(ids, window, last=True)
        else:
            window.ids = ids
        cache.restart(rows, window)

    def int8_weights(self) -> TransformerLanguageModel:
        """Generation only: the blocks' linear layers with int8 weights (`Int8Linear`), which a
        CPU that memory bandwidth limits reads about twice as fast. The embedding (and so the
        tied head) and the norms stay as they are."""
        for block in self.blocks:
            for parent in (block.attention, block.mlp):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, _int8_if_exact_enough(child))
            block.attention.plain_decode = True
        return self

    # Decoding many texts in one batch, each begun at its own time: a text's prompt is read
    # alone (`prefill`), placed to end at the batch's position, and its cache joins the
    # batch's `BatchCache` (`join`, once per sample of it); rows leave it with `keep`.

    def prefill(
        self, idx: torch.Tensor, batch: BatchCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """idx (1, T), one text -> the scores of its next token (1, V) and its cache."""
        start = batch.position - idx.shape[1] if batch is not None else 0
        logits, cache = self(idx, KVCache(self.context, position=start, ring=False), last=True)
        return logits[:, -1], cache

    def join(self, batch: BatchCache | None, row: KVCache, copies: int = 1) -> BatchCache:
        """The batch's cache with `copies` rows of the one-text cache `row` after its rows."""
        batch = batch if batch is not None else BatchCache(self.context, row.position)
        batch.join(row, copies)
        return batch

    @staticmethod
    def keep(batch: BatchCache, rows: torch.Tensor) -> BatchCache:
        """The cache of the batch's `rows` (ids, in order)."""
        batch.keep(rows)
        return batch
