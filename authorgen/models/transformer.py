"""A small decoder-only transformer (GPT), self-contained:

    idx (B, T) --embedding--> (B, T, E) --L blocks--> --LayerNorm--> --tied head--> logits (B, T, V)
    block: x + attention(LayerNorm(x)) then x + MLP(LayerNorm(x))   (pre-norm)

- Positions are rotary embeddings (RoPE, Su et al. 2021) applied to queries and keys, so
  attention depends only on how far apart two tokens are. No learned position table: the model
  can slide over a text longer than its training context.
- Attention is `F.scaled_dot_product_attention` (flash / memory-efficient kernels where the
  device has them).
- The output head reuses the embedding matrix (tied embeddings, Press & Wolf 2017).
- The "state" of the shared model interface is a `KVCache`: `model(idx, state)` attends to the
  cached keys and values as well as the new tokens', so generation costs one token's work per
  step. The cache spans at most `context` positions: older ones slide out, so a token sees at
  most `context - 1` before it, at every layer, however long the text.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from authorgen.config import ModelConfig


class KVCache:
    """Keys and values of every layer for the last positions, and the position the next token
    will have.

    A step of several tokens keeps the last `context - T` cached positions and appends the new
    ones, in order. A step of one token (generation) writes into a ring instead: a buffer of
    `context` slots per layer, position p in slot (p - base) % context, overwritten in place as
    it slides. One query may attend to its keys in any order (their positions are rotated into
    them already), so the ring needs no mask and no copy: about a fifth faster per token than
    growing the cache with `torch.cat`.
    """

    def __init__(self, context: int, position: int = 0, ring: bool = True):
        self.context = context
        self.position = position  # of the next token
        self.keys: list[torch.Tensor] = []  # per layer (B, H, S, D)
        self.values: list[torch.Tensor] = []
        self.use_ring = ring  # one-token steps may write a ring (False: always in order)
        self.ring = False  # the buffers are a ring now
        self.base = 0  # position of slot 0 of the ring
        self.filled = 0  # ring slots in use
        self._keep = 0  # cached positions the current step attends to, before its own

    @property
    def length(self) -> int:
        """Positions cached."""
        if not self.keys:
            return 0
        return self.filled if self.ring else self.keys[0].shape[2]

    def attend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Store the new keys and values k, v (B, H, T, D) of `layer`; return the keys and
        values its queries attend to and the mask to use: None for plain causal attention (or
        a single query, which sees every key given)."""
        T = k.shape[2]
        if layer == 0:  # the first layer decides the layout for the whole step
            self._arrange(T)
        if self.ring:
            return (*self._write_slot(layer, k, v), None)
        if layer == len(self.keys):  # nothing cached yet for this layer
            self.keys.append(k)
            self.values.append(v)
            return k, v, None
        keep = self._keep
        if not keep:  # the context is full of new positions: plain causal attention
            self.keys[layer], self.values[layer] = k, v
            return k, v, None
        keys = torch.cat((self.keys[layer][:, :, -keep:], k), dim=2)  # (B, H, keep + T, D)
        values = torch.cat((self.values[layer][:, :, -keep:], v), dim=2)
        self.keys[layer], self.values[layer] = keys, values
        # queries start `keep` positions in: query i sees keys 0 .. keep + i
        return keys, values, torch.ones(T, keep + T, dtype=torch.bool, device=k.device).tril(keep)

    def advance(self, steps: int) -> None:
        """Move on by the `steps` tokens just attended."""
        self.position += steps
        if self.ring:
            self.filled = min(self.filled + steps, self.context)

    def _arrange(self, T: int) -> None:
        """Before a step of T tokens: a ring for one token, positions in order for more, and
        how many cached positions the step keeps (the context holds them and the T new)."""
        if T == 1 and self.use_ring and self.keys:
            self._to_ring()
        elif T > 1 and self.ring:
            self._to_list()
        self._keep = min(self.length, self.context - T)

    def _to_ring(self) -> None:
        """Move the last context - 1 positions into ring buffers (slot 0 for the oldest)."""
        if self.ring:
            return
        kept = min(self.length, self.context - 1)
        for layer in (self.keys, self.values):
            for i, cached in enumerate(layer):
                B, H, S, D = cached.shape
                buffer = cached.new_empty(B, H, self.context, D)  # (B, H, context, D)
                buffer[:, :, :kept] = cached[:, :, S - kept :]
                layer[i] = buffer
        self.ring, self.base, self.filled = True, self.position - kept, kept

    def _to_list(self) -> None:
        """Back from a ring to positions in order, oldest first."""
        oldest = (self.position - self.base) % self.context if self.filled == self.context else 0
        for layer in (self.keys, self.values):
            for i, buffer in enumerate(layer):
                used = buffer[:, :, : self.filled]
                layer[i] = torch.cat((used[:, :, oldest:], used[:, :, :oldest]), dim=2)
        self.ring = False

    def _write_slot(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Put one position's k, v (B, H, 1, D) in its slot; the keys and values in use."""
        slot = (self.position - self.base) % self.context
        self.keys[layer][:, :, slot : slot + 1] = k
        self.values[layer][:, :, slot : slot + 1] = v
        used = max(self.filled, slot + 1)
        return self.keys[layer][:, :, :used], self.values[layer][:, :, :used]


class BatchCache:
    """The keys and values of a batch of texts begun at different times, decoded a token at a
    time together (the server's engine; `generate` too).

    Every row's next token has the same position: attention sees only how far apart two tokens
    are (RoPE), so a text that joins is read at positions that end where the batch is. The
    buffers are a ring of `context` slots per layer, position p in slot p % context; `valid`
    (B, context) marks the slots that hold a position of the row's own text (a row that joined
    late has not filled them all), and attention masks the others.
    """

    def __init__(self, context: int, position: int):
        self.context = context
        self.position = position  # of the next token, in every row
        self.keys: list[torch.Tensor] = []  # per layer (B, H, context, D)
        self.values: list[torch.Tensor] = []
        self.valid: torch.Tensor | None = None  # (B, context)
        self._mask: torch.Tensor | None = None

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Write one position's k, v (B, H, 1, D) of `layer` in its slot; return the buffers
        and the mask of the slots each row may see (None when every row sees every slot)."""
        slot = self.position % self.context
        if layer == 0:
            self.valid[:, slot] = True
            self._mask = None if bool(self.valid.all()) else self.valid[:, None, None, :]
        self.keys[layer][:, :, slot] = k[:, :, 0]
        self.values[layer][:, :, slot] = v[:, :, 0]
        return self.keys[layer], self.values[layer], self._mask

    def advance(self, steps: int) -> None:
        self.position += steps

    def join(self, row: KVCache, copies: int) -> None:
        """Add `copies` rows holding the last context - 1 positions of `row`, a one-text cache
        (positions in order) that ends at this batch's position."""
        kept = min(row.length, self.context - 1)
        device = row.keys[0].device
        positions = range(self.position - kept, self.position)
        slots = torch.tensor([p % self.context for p in positions], device=device)
        valid = torch.zeros(copies, self.context, dtype=torch.bool, device=device)
        valid[:, slots] = True
        self.valid = valid if self.valid is None else torch.cat((self.valid, valid))
        for mine, theirs in ((self.keys, row.keys), (self.values, row.values)):
            for layer, cached in enumerate(theirs):
                _, H, S, D = cached.shape
                buffer = cached.new_zeros(copies, H, self.context, D)  # (copies, H, context, D)
                buffer[:, :, slots] = cached[:, :, S - kept :]
                if layer == len(mine):
                    mine.append(buffer)
                else:
                    mine[layer] = torch.cat((mine[layer], buffer))

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the batch's `rows` (ids, in order)."""
        rows = rows.to(self.valid.device)
        self.valid = self.valid.index_select(0, rows)
        for layers in (self.keys, self.values):
            for i, buffer in enumerate(layers):
                layers[i] = buffer.index_select(0, rows)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i + D/2}) of x (B, H, T, D) by each position's angles (T, D/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    """Multi-head causal self-attention, its keys and values kept in the cache."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.embedding_dim, 3 * config.embedding_dim, bias=False)
        self.out = nn.Linear(config.embedding_dim, config.embedding_dim, bias=False)
        self.dropout = config.dropout
        # one query at a time (generation) as three plain operations, not the fused kernel,
        # which costs more to start than a single query's work; rounds differently from it
        self.plain_decode = False

    def forward(self, x, cos, sin, cache: KVCache, layer: int) -> torch.Tensor:
        """x (B, T, E) -> (B, T, E), attending to the cached positions and the causal past."""
        B, T, E = x.shape
        H = self.heads
        # (B, T, 3E) -> (B, T, 3, H, D) -> (3, B, H, T, D): queries, keys, values per head
        q, k, v = self.qkv(x).view(B, T, 3, H, E // H).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        k, v, mask = cache.attend(layer, k, v)  # (B, H, S, D), S = cached kept + T
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
    """A bias-free linear layer for generation on a CPU: each output row's weights as int8 with
    one bf16 scale (the row's largest magnitude / 127), multiplied by PyTorch's weight-only int8
    kernel. A token reads a quarter of the bytes fp32 weights take; the outputs differ from
    fp32 by about 1% of their scale, well inside what sampling at temperature draws from."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(rows, self.weight, self.scale)
        return y.reshape(*x.shape[:-1], -1).to(x.dtype)


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
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.embedding_dim, config.mlp_dim, bias=False)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(config.mlp_dim, config.embedding_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.gelu(self.fc(x)))  # (B, T, E) -> (B, T, mlp_dim) -> (B, T, E)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embedding_dim, bias=False)
        self.attention = Attention(config)
        self.norm2 = nn.LayerNorm(config.embedding_dim, bias=False)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, cache: KVCache, layer: int) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), cos, sin, cache, layer))
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
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.embedding_dim, bias=False)
        head_dim = config.embedding_dim // config.heads
        # computed on the CPU even when the model is built on the meta device to be loaded
        steps = torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu")
        inv_freq = 1.0 / (10_000 ** (steps / head_dim))
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
        cos, sin = self._angles(cache.position, T, idx.device)
        x = self.dropout(self.embedding(idx))  # (B, T, E)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer)
        cache.advance(T)
        x = x[:, -1:] if last else x
        return F.linear(self.norm(x), self.embedding.weight), cache  # tied head: (B, T, V)

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
