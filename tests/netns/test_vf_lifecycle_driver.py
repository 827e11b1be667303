"""The VfConfig ``driver`` field on a simulated node: its VFs sit on their kernel default
driver (``sriovsim-vf``) and nothing can rebind them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from netns_helpers import Pod
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import AttachError, VfProgrammingError
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.records import VfRecord
from sriov_dra_agent.vf.vf_settings import VfSettings

pytestmark = pytest.mark.netns

CLAIM = ClaimRef(uid="uid-1", namespace="default", name="claim-a")
VF1 = "0000:3b:02.1"


def _driver(hw: VfLifecycle, pci: str) -> str | None:
    return hw.backend.current_driver(hw.vf(pci))


@pytest.mark.parametrize("driver", ["", "default", "sriovsim-vf"], ids=["keep", "default", "same"])
def test_a_driver_the_vf_already_has_programs_without_a_binding(
    lifecycle: VfLifecycle, driver: str
) -> None:
    result = lifecycle.program(VF1, CLAIM, "vf", VfSettings(vlan=5), driver=driver)
    assert "vlan" in result.applied
    assert lifecycle.backend.read_vf_state(lifecycle.vf(VF1)).vlan == 5
    record = lifecycle.record(VF1)
    assert record is not None
    assert (record.driver, record.original_driver, record.original_override) == (
        None,
        "sriovsim-vf",
        None,
    )
    lifecycle.release(VF1)
    assert lifecycle.record(VF1) is None
    assert _driver(lifecycle, VF1) == "sriovsim-vf"
    assert lifecycle.backend.read_vf_state(lifecycle.vf(VF1)).vlan == 0


def test_vfio_is_refused_and_release_still_forgets_the_vf(lifecycle: VfLifecycle) -> None:
    with pytest.raises(VfProgrammingError) as info:
        lifecycle.program(VF1, CLAIM, "vf", VfSettings(vlan=5), driver="vfio-pci")
    assert info.value.describe() == (
        "driver: the simulated VF 0000:3b:02.1 can only use driver 'sriovsim-vf', not "
        '\'vfio-pci\'; fix: use driver "" or "default" in the VfConfig on simulated nodes'
    )
    record = lifecycle.record(VF1)
    assert record is not None
    # Written before binding, so that a crash mid-bind is undone; nothing was applied.
    assert (record.driver, record.desired) == ("vfio-pci", VfSettings())
    lifecycle.release(VF1)
    assert lifecycle.record(VF1) is None
    assert _driver(lifecycle, VF1) == "sriovsim-vf"


def _found_without_netdev(hw: VfLifecycle, *, driver: str | None) -> None:
    """The record of a VF first seen with no netdev (e.g. on vfio-pci), after we bound
    ``driver``: what a rebind on real lifecycle leaves, which no simulated VF can."""
    vf = hw.vf(VF1)
    hw.records.put(
        VfRecord(
            pci_address=VF1,
            pf_name=vf.pf_name,
            vf_index=vf.vf_index,
            claim=CLAIM,
            request="vf",
            host_ifname=None,
            original=hw.backend.read_vf_state(vf),
            original_driver="sriovsim-vf",
            driver=driver,
        )
    )


def test_the_netdev_of_the_driver_we_bound_is_attached_and_returned_to(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod]
) -> None:
    _found_without_netdev(lifecycle, driver="default")
    pod = make_pod()
    data = lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1")
    assert data.interface_name == "net1"
    assert pod.links() == ["lo", "net1"]
    record = lifecycle.record(VF1)
    assert record is not None
    assert (record.host_ifname, record.adopted_netdev) == ("simpf0v1", True)
    lifecycle.detach(VF1)
    assert pod.links() == ["lo"]
    assert lifecycle.backend.host_netdev(lifecycle.vf(VF1)) == "simpf0v1"
    lifecycle.release(VF1)
    assert lifecycle.records_all() == []


def test_a_vf_without_netdev_that_we_did_not_rebind_cannot_attach(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod]
) -> None:
    _found_without_netdev(lifecycle, driver=None)
    pod = make_pod()
    with pytest.raises(AttachError) as info:
        lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1")
    assert info.value.describe() == (
        "driver: VF 0000:3b:02.1 has no network interface (bound to 'sriovsim-vf'); "
        "fix: use a kernel network driver, or no attach in vfio-pci mode"
    )
    assert pod.links() == ["lo"]
    record = lifecycle.record(VF1)
    assert record is not None
    assert (record.host_ifname, record.attachment) == (None, None)
