"""Strategies shared by the fuzz tests: JSON-ish values, the shapes the apiserver lets through."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

SCALARS: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
"""What a JSON document may hold at a leaf."""

JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value."""

OBJECTS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(st.text(max_size=10), JSON, max_size=5)
"""Any JSON object."""


def with_keys(
    keys: list[str], values: st.SearchStrategy[Any] = JSON
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with a subset of ``keys`` (the fields a parser knows), each with any value."""
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))
