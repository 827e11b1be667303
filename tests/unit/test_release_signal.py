"""The hand-over signal: condition Released on the agent's status.devices entry of every VF."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.constants import DRIVER_NAME, PREFIX
from sriov_dra.release_signal import allocated_vfs, released_by_agent, released_vfs

VF0, VF1 = ("node-a", "0000-3b-02-0"), ("node-a", "0000-3b-02-1")


def result(vf: tuple[str, str], driver: str = DRIVER_NAME, **more: Any) -> dict[str, Any]:
    return {"driver": driver, "pool": vf[0], "device": vf[1], "request": "vf", **more}


def entry(vf: tuple[str, str], status: str = "True", driver: str = DRIVER_NAME) -> dict[str, Any]:
    condition = {"type": "Released", "status": status, "reason": "Released", "message": ""}
    return {"driver": driver, "pool": vf[0], "device": vf[1], "conditions": [condition]}


def claim(
    results: list[dict[str, Any]], devices: list[dict[str, Any]], **meta: Any
) -> dict[str, Any]:
    return {
        "metadata": {"uid": "u-1", **meta},
        "status": {"allocation": {"devices": {"results": results}}, "devices": devices},
    }


@pytest.mark.parametrize(
    ("results", "devices", "released"),
    [
        pytest.param([result(VF0)], [entry(VF0)], True, id="its-one-vf"),
        pytest.param([result(VF0), result(VF1)], [entry(VF0), entry(VF1)], True, id="both"),
        pytest.param([result(VF0), result(VF1)], [entry(VF0)], False, id="one-of-two"),
        pytest.param([result(VF0)], [entry(VF0, status="False")], False, id="condition-false"),
        pytest.param([result(VF0)], [entry(VF0, driver="other.example.com")], False,
                     id="another-drivers-entry"),
        pytest.param([result(VF0)], [], False, id="no-entry"),
        pytest.param([], [entry(VF0)], False, id="nothing-allocated"),
        pytest.param([result(VF0), result(VF1, driver="other.example.com")], [entry(VF0)], True,
                     id="other-drivers-results-are-not-ours-to-wait-for"),
        pytest.param([result(VF0), result(VF1, adminAccess=True)], [entry(VF0)], True,
                     id="admin-access-results-hold-no-vf"),
    ],
)  # fmt: skip
def test_released_only_when_every_allocated_vf_has_condition_released(
    results: list[dict[str, Any]], devices: list[dict[str, Any]], released: bool
) -> None:
    assert released_by_agent(claim(results, devices)) is released


def test_an_annotation_is_no_signal() -> None:
    # What the hand-over once read: anyone who may patch the claim can write it.
    body = claim([result(VF0)], [], annotations={f"{PREFIX}/released": "u-1"})
    assert allocated_vfs(body) == {VF0}
    assert released_vfs(body) == frozenset()
    assert not released_by_agent(body)
