"""Device taints against request tolerations (sriov_dra.device_taints), in the allocator too."""

from __future__ import annotations

from typing import Any

import pytest
from allocator_inputs import claim, node_vfs, picks, request, run, slice_, vf
from sriov_dra.device_health import PF_LINK_DOWN_TAINT
from sriov_dra.device_taints import describe, tolerates, untolerated
from sriov_dra.errors import NoDeviceAvailable

DOWN = {"key": PF_LINK_DOWN_TAINT, "value": "ens1f0", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        pytest.param({"key": PF_LINK_DOWN_TAINT, "operator": "Exists"}, True, id="exists-key"),
        pytest.param({"operator": "Exists"}, True, id="exists-everything"),
        pytest.param({"key": PF_LINK_DOWN_TAINT, "value": "ens1f0"}, True, id="equal-default"),
        pytest.param({"key": PF_LINK_DOWN_TAINT, "value": "ens1f1"}, False, id="other-value"),
        pytest.param({"key": "other", "operator": "Exists"}, False, id="other-key"),
        pytest.param(
            {"key": PF_LINK_DOWN_TAINT, "operator": "Exists", "effect": "NoExecute"},
            False,
            id="other-effect",
        ),
        pytest.param(
            {"key": PF_LINK_DOWN_TAINT, "operator": "Exists", "effect": "NoSchedule"},
            True,
            id="same-effect",
        ),
    ],
)
def test_toleration_rules(toleration: dict[str, Any], tolerated: bool) -> None:
    assert tolerates(toleration, DOWN) is tolerated
    assert (untolerated([DOWN], [toleration]) == []) is tolerated


def test_only_no_schedule_and_no_execute_keep_a_device_off() -> None:
    other = {"key": "note", "effect": "None"}
    assert untolerated([DOWN, other], []) == [DOWN]
    assert describe(DOWN) == f"{PF_LINK_DOWN_TAINT}=ens1f0:NoSchedule"


def tainted_node() -> dict[str, Any]:
    """Node n1: PF 0's two VFs tainted (its link is down), PF 1's two not."""
    return slice_(
        "n1", [vf(0, i) | {"taints": [DOWN]} for i in range(2)] + [vf(1, i) for i in range(2)]
    )


def test_the_allocator_skips_tainted_vfs() -> None:
    allocation = run(claim(request(count=2)), [tainted_node()])
    assert [device for _, _, device in picks(allocation)] == ["0000-02-00-2", "0000-02-00-3"]


def test_a_request_that_tolerates_the_taint_may_get_a_tainted_vf() -> None:
    tolerating = request(tolerations=[{"key": PF_LINK_DOWN_TAINT, "operator": "Exists"}])
    allocation = run(claim(tolerating), [tainted_node()])
    assert [device for _, _, device in picks(allocation)] == ["0000-01-00-2"]


def test_no_untainted_vf_left_names_the_taint_and_the_fix() -> None:
    with pytest.raises(NoDeviceAvailable) as raised:
        run(claim(request(count=3)), [tainted_node()])
    text = raised.value.describe()
    assert f"tainted: device n1/0000-01-00-2 ({PF_LINK_DOWN_TAINT}=ens1f0:NoSchedule)" in text
    assert "tolerations" in text


def test_untainted_pools_allocate_as_before() -> None:
    assert len(picks(run(claim(request(count=4)), [node_vfs("n1")]))) == 4
