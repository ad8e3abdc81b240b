"""Batches of token windows from a token cache, reproducible and sliced by rank.

Batches slice a memmap opened per call: only the rows a batch reads are touched, so resident
memory stays flat however big the cache is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from llm_tiny.tokens import TokenFile


def windows(tf: TokenFile, offsets: np.ndarray, block_size: int) -> tuple[Tensor, Tensor]:
    """Inputs x and targets y (len(offsets), block_size): y is x shifted left by one token."""
    idx = offsets.astype(np.int64)[:, None] + np.arange(block_size + 1)
    chunk = torch.from_numpy(tf.array()[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def window_batches(
    tf: TokenFile, offsets: np.ndarray, batch_size: int, block_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """The windows at `offsets`, batch_size of them at a time (the last batch may be smaller)."""
    for i in range(0, len(offsets), batch_size):
        yield windows(tf, offsets[i : i + batch_size], block_size)


def get_batch(
    tf: TokenFile,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[Tensor, Tensor]:
    """This rank's share of one global batch of random windows.

    Every rank draws the same batch_size offsets from its (identically seeded) generator and keeps rows
    rank*B/W .. (rank+1)*B/W, so the global batch is the same whatever the number of processes.
    """
    offsets = torch.randint(tf.n - block_size, (batch_size,), generator=generator)
    per = batch_size // world_size
    return windows(tf, offsets[rank * per : (rank + 1) * per].numpy(), block_size)


def fixed_offsets(tf: TokenFile, block_size: int, count: int) -> np.ndarray:
    """`count` window offsets spread evenly over tf: the same validation subset at every evaluation."""
    return np.linspace(0, tf.n - block_size - 1, count).round().astype(np.int64)
