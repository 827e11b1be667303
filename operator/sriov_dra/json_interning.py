"""Decoded API objects kept with one copy of each repeated string.

``json.loads`` shares a dict key only within one document, and a watch stream is
decoded one event at a time: every cached claim held its own ``"metadata"``,
``"resourceVersion"``, ``"allocation"``... and its own copy of the driver, pool,
node, device, condition and timestamp strings that thousands of claims repeat.
:func:`interned` rebuilds such a tree with every string (keys and values) taken
from the interpreter's intern table, which drops a string again once nothing
holds it, so unique values (uids, names) cost only their table entry.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any


def interned(value: Any, *, drop: Collection[str] = ()) -> Any:
    """A copy of the JSON value ``value`` with its strings interned.

    Dicts and lists are rebuilt (the caller's object is not changed); other values
    are returned as they are. Keys named in ``drop`` are left out of every dict.
    """
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {
            sys.intern(k) if isinstance(k, str) else k: interned(v, drop=drop)
            for k, v in value.items()
            if k not in drop
        }
    if isinstance(value, list):
        return [interned(v, drop=drop) for v in value]
    return value
