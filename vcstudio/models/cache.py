"""The one explicit, process-wide model cache (DESIGN: no other global state).

LRU by key (model id, kind, dtype, device); ``clear()`` frees it on memory pressure.
"""
from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable


class ModelCache:
    def __init__(self, max_items: int = 6) -> None:
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = factory()  # built outside the lock: loading can take long
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def keys(self) -> list:
        return list(self._items)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)
        _free()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
        _free()


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - torch missing is not this module's problem
        pass


# The explicit default instance; callers may pass their own.
default_cache = ModelCache()
