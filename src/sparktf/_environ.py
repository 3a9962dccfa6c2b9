"""Environment variables set for the length of a ``with`` block, then restored."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["temporary_environ"]


@contextmanager
def temporary_environ(values: Mapping[str, str], *, remove: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` and unset ``remove`` in this process's environment; restore both afterwards."""
    keys = set(values) | set(remove)
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in remove:
            os.environ.pop(k, None)
        os.environ.update(values)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
