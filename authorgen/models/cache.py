"""The transformer's memory of what it has read: the keys and values of every layer, for one
text (`KVCache`, positions in order or a ring) or for a batch of texts begun at different times
(`BatchCache`, the server's engine). Attention sees only how far apart two tokens are (RoPE), so
both may slide past the training context and place a text anywhere.

Learned positions (GPT-2) are a table of `context` vectors, so a row's position in its own window
(`window_positions`: its position less its `origin`) must stay below `context`. The caches keep
each row's last ids (`record`), and a row about to pass the table's end starts a new window: the
model reads its last tokens again from position 0 (`full_rows`, `last_ids`, `restart`).
"""

from __future__ import annotations

import torch


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
        self.origin = position  # where the window of learned positions began
        self.ids: torch.Tensor | None = None  # (B, <= context) the last ids (learned positions)

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

    def window_positions(self, T: int, device) -> torch.Tensor:
        """(1, T): the positions of the next T tokens in the window."""
        start = self.position - self.origin
        return torch.arange(start, start + T, device=device)[None]

    def record(self, idx: torch.Tensor) -> None:
        """Keep the ids idx (B, T) of the step, the last `context` of them."""
        ids = idx if self.ids is None else torch.cat((self.ids, idx), dim=1)
        self.ids = ids[:, -self.context :]

    def full_rows(self, T: int) -> slice | None:
        """Every row (a slice) when T more tokens would pass the window's end, else None."""
        return slice(None) if self.position - self.origin + T > self.context else None

    def last_ids(self, rows: slice, kept: int) -> torch.Tensor:
        return self.ids[rows, self.ids.shape[1] - kept :]

    def restart(self, rows: slice, window: KVCache) -> None:
        """Become `window`, the cache of the last ids read again from position 0."""
        use_ring = self.use_ring
        vars(self).update(vars(window))
        self.use_ring = use_ring

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
        self.origins: torch.Tensor | None = None  # (B,) where each row's window began
        self.ids: torch.Tensor | None = None  # (B, context) each slot's id (learned positions)

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
        new = self._rows(row, copies)
        if self.valid is None:
            self.valid, self.origins, self.ids, self.keys, self.values = new
            return
        valid, origins, ids, keys, values = new
        self.valid = torch.cat((self.valid, valid))
        self.origins = torch.cat((self.origins, origins))
        if ids is not None:
            self.ids = torch.cat((self.ids, ids))
        for mine, theirs in ((self.keys, keys), (self.values, values)):
            for layer, buffer in enumerate(theirs):
                mine[layer] = torch.cat((mine[layer], buffer))

    def _rows(self, row: KVCache, copies: int):
        """valid (copies, context), origins (copies,), ids (copies, context) or None, and the
        keys and values per layer (copies, H, context, D) of `copies` rows of `row`."""
        kept = min(row.length, self.context - 1)
        device = row.keys[0].device
        positions = range(self.position - kept, self.position)
        slots = torch.tensor([p % self.context for p in positions], device=device)
        valid = torch.zeros(copies, self.context, dtype=torch.bool, device=device)
        valid[:, slots] = True
        origins = torch.full((copies,), row.origin, device=device)
        ids = None
        if row.ids is not None:
            ids = torch.zeros(copies, self.context, dtype=row.ids.dtype, device=device)
            ids[:, slots] = row.ids[:, row.ids.shape[1] - kept :]
        keys, values = [], []
        for mine, theirs in ((keys, row.keys), (values, row.values)):
            for cached in theirs:
                _, H, S, D = cached.shape
                buffer = cached.new_zeros(copies, H, self.context, D)  # (copies, H, context, D)
                buffer[:, :, slots] = cached[:, :, S - kept :]
                mine.append(buffer)
        return valid, origins, ids, keys, values

    def window_positions(self, T: int, device) -> torch.Tensor:
        """(B, 1): each row's position of the next token in its window (T is 1)."""
        return (self.position - self.origins)[:, None].to(device)

    def record(self, idx: torch.Tensor) -> None:
        self.ids[:, self.position % self.context] = idx[:, 0]

    def full_rows(self, T: int) -> torch.Tensor | None:
        """The rows whose next T tokens would pass their window's end, or None."""
        full = (self.position - self.origins + T > self.context).nonzero().flatten()
        return full if len(full) else None

    def last_ids(self, rows: torch.Tensor, kept: int) -> torch.Tensor:
        """(R, kept): the last `kept` ids of the `rows`, oldest first."""
        slots = torch.arange(self.position - kept, self.position) % self.context
        return self.ids[rows][:, slots.to(self.ids.device)]

    def restart(self, rows: torch.Tensor, window: KVCache) -> None:
        """The `rows` become the rows of `window`, their last ids read again from position 0."""
        valid, origins, ids, keys, values = self._rows(window, len(rows))
        self.valid[rows], self.origins[rows], self.ids[rows] = valid, origins, ids
        for mine, theirs in ((self.keys, keys), (self.values, values)):
            for layer, buffer in enumerate(theirs):
                mine[layer][rows] = buffer

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the batch's `rows` (ids, in order)."""
        rows = rows.to(self.valid.device)
        self.valid = self.valid.index_select(0, rows)
        self.origins = self.origins.index_select(0, rows)
        if self.ids is not None:
            self.ids = self.ids.index_select(0, rows)
        for layers in (self.keys, self.values):
            for i, buffer in enumerate(layers):
                layers[i] = buffer.index_select(0, rows)
