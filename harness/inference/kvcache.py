"""The fast decoding loop's KV cache: one buffer per layer, reserved for the whole generation.

transformers' cache classes changed shape across releases (DynamicLayer came with 4.56); this module is
imported only by the fast path, so the exact path also runs under the organisers' transformers 4.45.2.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class _ReservedLayer(DynamicLayer):
    """A KV-cache layer that writes into a buffer reserved for the whole generation.

    transformers' DynamicLayer concatenates the new keys and values onto the old ones at every step, which
    copies the whole cache each step; here the keys and values handed to attention are views of the buffer.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            b, h, _, d = key_states.shape
            self.buffers = (
                key_states.new_empty((b, h, self.capacity, d)),
                value_states.new_empty((b, h, self.capacity, value_states.shape[-1])),
            )
            self.device = key_states.device
            self.is_initialized = True
        start, self.length = self.length, self.length + key_states.shape[-2]
        self.buffers[0][:, :, start : self.length] = key_states
        self.buffers[1][:, :, start : self.length] = value_states
        self.keys = self.buffers[0][:, :, : self.length]
        self.values = self.buffers[1][:, :, : self.length]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
            self.keys = self.buffers[0][:, :, : self.length]
            self.values = self.buffers[1][:, :, : self.length]


def reserved_cache(num_layers: int, capacity: int) -> Cache:
    """A cache of `num_layers` layers, each holding up to `capacity` positions without reallocating."""
    return Cache(layers=[_ReservedLayer(capacity) for _ in range(num_layers)])
