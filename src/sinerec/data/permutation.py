"""A keyed pseudo-random permutation of ``range(n)`` evaluated at any positions, without materialising it.

The epoch order of training (``sinerec.data.batching.TrainBatches``) is ``order[i] = permute(i)``: a process
computes only the positions it needs (one batch of its shard at a time), so neither one process nor each of
several torchrun ranks holds an array of all training examples, and the global order stays a function of
(seed, epoch) alone whatever the number of ranks.

The permutation is a balanced Feistel network of :data:`ROUNDS` rounds over the smallest even number of bits
``b`` with ``2**b >= n`` (a bijection of ``range(2**b)``), restricted to ``range(n)`` by cycle walking: a
value ``>= n`` is encrypted again until it falls below ``n`` (``2**b < 4 n``, so a few rounds on average).
Each round mixes its half with a splitmix64 finaliser keyed by one 64-bit key drawn from
``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROUNDS", "Permutation"]

#: Feistel rounds (4 give a pseudo-random permutation; 6 mix small domains better at little cost).
ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class Permutation:
    """``p[i]`` for a fixed pseudo-random permutation ``p`` of ``range(n)`` keyed by ``seed``.

    ``p(positions)`` maps an int array of positions in ``[0, n)`` to their permuted values (int64, same
    shape); equal (n, seed) give the same permutation in every process and on every platform.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 0:
            raise ValueError(f"Permutation: n must be >= 0, got {n}")
        self.n = n
        bits = max(2, int(n - 1).bit_length()) if n > 1 else 2
        bits += bits % 2
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        self.keys = np.random.default_rng(seed).integers(0, 2**63, size=ROUNDS, dtype=np.int64).astype(np.uint64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            z = right ^ key
            z = (z ^ (z >> np.uint64(30))) * _M1
            z = (z ^ (z >> np.uint64(27))) * _M2
            z ^= z >> np.uint64(31)
            left, right = right, left ^ (z & self.mask)
        out: np.ndarray = (left << self.half) | right
        return out

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions)
        if positions.size and (positions.min() < 0 or positions.max() >= self.n):
            raise IndexError(f"Permutation: positions must lie in [0, {self.n})")
        x = self._encrypt(positions.astype(np.uint64))
        walk = np.flatnonzero(x >= self.n)
        while walk.size:  # cycle walking: stays a bijection of range(n)
            x[walk] = self._encrypt(x[walk])
            walk = walk[x[walk] >= self.n]
        return x.astype(np.int64)
