"""Tag names → stable integer ids, vectorised per batch.

Batches carry a ``names`` list and per-row indices into it; the recorder passes the tag database's
own ``names`` list with every batch, so the mapping ``batch index → store id`` is an array cached per
names list and extended only for rows not seen before (one fancy-index per batch, no per-row dict).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


class NameMap:
    """Maps batch-local tag indices to store ids; ``create(names) -> ids`` persists new names."""

    def __init__(self, known: dict[str, int], create: Callable[[list[str]], list[int]], keep: int = 4) -> None:
        self.known = known
        self.create = create
        self.keep = keep
        self._cache: list[tuple[Sequence[str], I64]] = []

    def ids(self, names: Sequence[str], tag: I64) -> I64:
        arr: I64 | None = None
        for i, (ref, a) in enumerate(self._cache):
            if ref is names:
                arr = a
                if a.size < len(names):
                    arr = np.concatenate([a, np.full(len(names) - a.size, -1, np.int64)])
                    self._cache[i] = (names, arr)
                break
        if arr is None:
            arr = np.full(len(names), -1, np.int64)
            self._cache.append((names, arr))
            if len(self._cache) > self.keep:
                self._cache.pop(0)
        if tag.size == 0:
            return np.zeros(0, np.int64)
        missing = arr[tag] < 0
        if missing.any():
            need = np.unique(tag[missing]).tolist()
            new: list[str] = []
            for j in need:
                nm = names[j]
                sid = self.known.get(nm)
                if sid is None:
                    new.append(nm)
                else:
                    arr[j] = sid
            if new:
                for nm, sid in zip(new, self.create(new), strict=True):
                    self.known[nm] = sid
            for j in need:
                arr[j] = self.known[names[j]]
        return arr[tag]
