"""Slices compacted against a table of attribute values: equal content, shared values."""

from __future__ import annotations

import copy
import json
from typing import Any

from sriov_dra.cel_selectors import compile_selector
from sriov_dra.device_pools import Selector, pools_from_slices
from sriov_dra.slice_interning import SliceInterner


def slice_for(node: str, vfs: int = 3) -> dict[str, Any]:
    devices = [
        {
            "name": f"0000-3b-02-{i}",
            "attributes": {
                "PFName": {"string": "ens1f0"},
                "vfID": {"int": i},
                "nodeName": {"string": node},
                "rdmaCapable": {"bool": False},
            },
        }
        for i in range(vfs)
    ]
    return {
        "metadata": {"name": f"{node}-0", "resourceVersion": "7"},
        "spec": {"driver": "d", "nodeName": node, "pool": {"name": node}, "devices": devices},
    }


def decoded(body: dict[str, Any]) -> dict[str, Any]:
    """As the API client hands it over: every value a fresh object."""
    result: dict[str, Any] = json.loads(json.dumps(body))
    return result


def test_compacted_slice_equals_the_original() -> None:
    body = decoded(slice_for("node-a"))
    before = copy.deepcopy(body)
    compacted = SliceInterner().compact(body)
    assert compacted == before
    assert body == before, "the input is not changed"


def test_equal_values_are_one_object_across_devices_and_slices() -> None:
    interner = SliceInterner()
    a = interner.compact(decoded(slice_for("node-a")))
    b = interner.compact(decoded(slice_for("node-b")))
    pf = [d["attributes"]["PFName"] for s in (a, b) for d in s["spec"]["devices"]]
    assert all(value is pf[0] for value in pf)
    first_vf = [s["spec"]["devices"][0]["attributes"]["vfID"] for s in (a, b)]
    assert first_vf[0] is first_vf[1]
    nodes = [s["spec"]["devices"][0]["attributes"]["nodeName"] for s in (a, b)]
    assert nodes[0] is not nodes[1] and nodes[0] != nodes[1]
    # PF name, rdmaCapable, vfID 0..2, two node names
    assert len(interner) == 7


def test_false_and_zero_stay_apart() -> None:
    """{"bool": False} and {"int": 0} hash alike as tuples of items only if keys match."""
    interner = SliceInterner()
    body = decoded(slice_for("node-a", vfs=1))
    body["spec"]["devices"][0]["attributes"]["zero"] = {"int": 0}
    body["spec"]["devices"][0]["attributes"]["no"] = {"bool": False}
    attributes = interner.compact(body)["spec"]["devices"][0]["attributes"]
    assert attributes["zero"] == {"int": 0} and attributes["no"] == {"bool": False}


def test_odd_shapes_pass_through() -> None:
    interner = SliceInterner()
    assert interner.compact({"metadata": {"name": "x"}}) == {"metadata": {"name": "x"}}
    body = decoded(slice_for("node-a", vfs=1))
    body["spec"]["devices"][0]["attributes"]["list"] = {"string": ["unhashable"]}
    body["spec"]["devices"].append({"name": "no-attributes"})
    assert interner.compact(body) == body


def test_table_starts_over_at_its_limit() -> None:
    interner = SliceInterner(limit=4)
    for node in ("a", "b", "c", "d"):
        interner.compact(decoded(slice_for(node, vfs=1)))
    assert len(interner) <= 4


def test_compacted_attributes_read_as_a_mapping_and_share_their_names() -> None:
    interner = SliceInterner()
    a, b = (interner.compact(decoded(slice_for(n, vfs=1))) for n in ("node-a", "node-b"))
    attributes = a["spec"]["devices"][0]["attributes"]
    assert attributes.get("vfID") == {"int": 0} and attributes.get("missing") is None
    assert "PFName" in attributes and "missing" not in attributes
    assert list(attributes) == ["PFName", "vfID", "nodeName", "rdmaCapable"]
    assert len(attributes) == 4 and dict(attributes.items())["nodeName"] == {"string": "node-a"}
    other = b["spec"]["devices"][0]["attributes"]
    assert [x is y for x, y in zip(attributes, other, strict=True)] == [True] * 4


def test_selectors_evaluate_on_compacted_slices() -> None:
    """The CEL input is built from the compacted attributes, also when no shared result helps."""
    body = SliceInterner().compact(decoded(slice_for("node-a", vfs=3)))
    (pool,) = pools_from_slices([body], driver="d")
    expression = 'device.attributes["d"].vfID + 1 == 2 && !device.attributes["d"].rdmaCapable'
    selector = Selector(compile_selector(expression), path="selectors[0]")
    assert [d.key.device for d in pool.devices if selector.test(d)] == ["0000-3b-02-1"]
