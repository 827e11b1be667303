"""Decoded API objects with their strings interned: equal content, one copy of each string."""

from __future__ import annotations

import copy
import json
from typing import Any

from sriov_dra.json_interning import interned


def claim(name: str) -> dict[str, Any]:
    body = {
        "metadata": {"name": name, "namespace": "ns", "managedFields": [{"manager": "x"}]},
        "status": {"allocation": {"devices": {"results": [{"driver": "d", "pool": "node-a"}]}}},
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"count": 1}}]}},
    }
    # As a watch stream hands it over: each event decoded on its own, every string fresh.
    decoded: dict[str, Any] = json.loads(json.dumps(body))
    return decoded


def test_the_copy_equals_the_original_but_what_is_dropped() -> None:
    body = claim("a")
    before = copy.deepcopy(body)
    kept = interned(body, drop=("managedFields",))
    del before["metadata"]["managedFields"]
    assert kept == before
    assert "managedFields" in body["metadata"], "the input is not changed"


def test_keys_and_repeated_values_are_one_object_across_objects() -> None:
    a, b = interned(claim("a")), interned(claim("b"))
    key_a = next(k for k in a["status"] if k == "allocation")
    key_b = next(k for k in b["status"] if k == "allocation")
    assert key_a is key_b
    pool = [x["status"]["allocation"]["devices"]["results"][0]["pool"] for x in (a, b)]
    assert pool[0] is pool[1]
    # Without interning each decoded claim has its own copy.
    raw = [claim(n)["status"]["allocation"]["devices"]["results"][0]["pool"] for n in "ab"]
    assert raw[0] is not raw[1]


def test_other_values_pass_through() -> None:
    assert interned({"n": 3, "b": False, "x": None, "f": 1.5}) == {
        "n": 3,
        "b": False,
        "x": None,
        "f": 1.5,
    }
