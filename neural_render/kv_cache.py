"""A fixed-capacity KV cache for streaming generation: a ring buffer of `window` framelets per block.

Because rotary positions have no temporal component and the framelet-causal mask lets the newest framelet
see every framelet in its window, the order in which framelets sit in the ring does not matter. So the
framelet being generated simply overwrites the ring slot of the oldest framelet, the one that leaves the
window as it enters: no rolls, no concatenations, no whole-cache copies, and the tensors are allocated
once. Per framelet the cache copies at most one framelet's keys and values (when `stage` is used).

The write slot is addressed through a device tensor of token indices (`index_copy_`), not a Python slice,
so a compiled model is not specialised on the slot and one captured CUDA graph serves every slot. Blocks
write through per-block views of the ring (made once): torch.compile then updates each view in place,
whereas writing into `keys[layer]` made it copy the whole ring of every block back after each pass.

Legend: l blocks, b batch (environments), h heads, w window (slots), s tokens per framelet, e head width.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of the last `window` framelets of every block, in preallocated ring slots.

    Life of one framelet: `begin()` claims the write slot (the oldest framelet's), every forward pass of
    the new framelet writes its keys/values there through `attend`, `stage()` may set aside the keys and
    values of one chosen pass, `restore_staged()` puts them back into the slot, and `commit()` makes the
    slot part of the context and moves the write index on. `reset(slots)` forgets the context of some environments.
    """

    def __init__(
        self,
        *,
        num_blocks: int,
        batch_size: int,
        heads: int,
        head_dim: int,
        tokens_per_framelet: int,
        window: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.window = window
        self.tokens_per_framelet = tokens_per_framelet
        ring = (num_blocks, batch_size, heads, window * tokens_per_framelet, head_dim)  # (l, b, h, w*s, e)
        one = (num_blocks, batch_size, heads, tokens_per_framelet, head_dim)  # (l, b, h, s, e)
        self.keys = torch.zeros(ring, device=device, dtype=dtype)
        self.values = torch.zeros(ring, device=device, dtype=dtype)
        self.staged_keys = torch.zeros(one, device=device, dtype=dtype)
        self.staged_values = torch.zeros(one, device=device, dtype=dtype)
        self._layer_keys = [self.keys[layer] for layer in range(num_blocks)]  # (b, h, w*s, e) views, made once
        self._layer_values = [self.values[layer] for layer in range(num_blocks)]
        self.write_index = 0
        self._slots = torch.arange(window * tokens_per_framelet, device=device).view(window, tokens_per_framelet)
        self._index = self._slots[0].clone()  # token indices of the write slot, updated in place by begin()
        self._valid = np.zeros((batch_size, window), dtype=bool)  # host copy: no device sync to decide
        self._mask: torch.Tensor | None = None
        self._mask_stale = True

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """Framelets each environment can see now (committed context plus a begun framelet), (b,)."""
        return self._valid.sum(axis=1)

    def begin(self) -> None:
        """Claim the write slot for a new framelet; the oldest framelet there leaves the window."""
        self._index.copy_(self._slots[self.write_index])
        if not self._valid[:, self.write_index].all():
            self._valid[:, self.write_index] = True
            self._mask_stale = True
        self.key_mask()  # settle the mask here, outside any compiled or captured forward pass

    def key_mask(self) -> torch.Tensor | None:
        """Boolean (b, 1, 1, w*s) of slots that hold a framelet, or None when all of them do."""
        if self._mask_stale:
            if self._valid.all():
                self._mask = None
            else:
                valid = torch.from_numpy(self._valid.repeat(self.tokens_per_framelet, axis=1))
                self._mask = valid.to(self.keys.device)[:, None, None, :]
            self._mask_stale = False
        return self._mask

    def attend(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Write the new framelet's keys/values (b, h, s, e) of one block into the write slot; return that
        block's whole ring (b, h, w*s, e) twice and the key mask to attend with."""
        if torch.is_grad_enabled():  # autograd wants views taken after earlier in-place writes: fresh ones
            layer_keys, layer_values = self.keys[layer], self.values[layer]
        else:
            layer_keys, layer_values = self._layer_keys[layer], self._layer_values[layer]  # (b, h, w*s, e)
        layer_keys.index_copy_(2, self._index, keys.to(layer_keys.dtype))
        layer_values.index_copy_(2, self._index, values.to(layer_values.dtype))
        return layer_keys, layer_values, self.key_mask()

    def stage(self) -> None:
        """Set aside the keys/values the latest pass wrote into the write slot (all blocks)."""
        self.staged_keys.copy_(self.keys.index_select(3, self._index))
        self.staged_values.copy_(self.values.index_select(3, self._index))

    def restore_staged(self) -> None:
        """Put the staged keys/values back into the write slot (all blocks); device work only."""
        self.keys.index_copy_(3, self._index, self.staged_keys)
        self.values.index_copy_(3, self._index, self.staged_values)

    def commit(self) -> None:
        """Keep the write slot as context and advance the write index."""
        self.write_index = (self.write_index + 1) % self.window

    def reset(self, slots=None) -> None:
        """Forget the context of the environments in `slots` (indices or a bool mask; None = all)."""
        if slots is None:
            self._valid[:] = False
        else:
            index = np.asarray(slots)
            self._valid[index if index.dtype == bool else index.astype(int)] = False
        self._mask_stale = True
