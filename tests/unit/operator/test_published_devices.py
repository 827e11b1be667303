"""What our driver's ResourceSlices publish: the newest generation's devices, VF counts."""

from __future__ import annotations

from sriov_dra.constants import ATTR_PF_NAME
from sriov_dra.device_pools import DeviceKey
from sriov_dra_operator.slices import published_devices, vf_counts

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"


def slice_(generation: int, *names: str, driver: str = DRIVER) -> dict[str, object]:
    return {
        "spec": {
            "driver": driver,
            "nodeName": "n1",
            "pool": {"name": "n1", "generation": generation, "resourceSliceCount": 1},
            "devices": [
                {"name": name, "attributes": {"PFName": {"string": "ens1"}}} for name in names
            ],
        }
    }


def test_only_the_newest_generation_of_our_driver_counts() -> None:
    slices = [
        slice_(2, "0000-08-00-2", "0000-08-00-3"),
        slice_(1, "0000-09-00-0"),
        slice_(5, "gpu-0", driver="gpu.example.com"),
    ]
    devices = published_devices(slices, driver=DRIVER)
    assert set(devices) == {DeviceKey(DRIVER, "n1", "0000-08-00-2"),
                            DeviceKey(DRIVER, "n1", "0000-08-00-3")}  # fmt: skip
    # Unqualified attributes belong to the driver's domain.
    assert devices[DeviceKey(DRIVER, "n1", "0000-08-00-2")].attribute(ATTR_PF_NAME) == "ens1"
    assert vf_counts(devices, {DeviceKey(DRIVER, "n1", "0000-08-00-3")}) == {"n1": (1, 1)}
