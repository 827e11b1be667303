"""ResourceSlices, DeviceClasses and claims for the allocator's tests, built small."""

from __future__ import annotations

from typing import Any

from sriov_dra.allocator import allocate
from sriov_dra.device_pools import pools_from_slices

D = "sriovnetwork.k8snetworkplumbingwg.io"
VFCONFIG = {"apiVersion": f"{D}/v1alpha1", "kind": "VfConfig"}
CLASS = {
    "metadata": {"name": D},
    "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{D}"'}}]},
}
CLASSES = {D: CLASS}


def vf(pf: int, index: int, numa: int = 0, **extra: Any) -> dict[str, Any]:
    """A VF device dict: PF ens1f<pf>, VF <index>."""
    name = f"0000-0{pf + 1}-00-{index + 2}"
    attributes: dict[str, Any] = {
        "PFName": {"string": f"ens1f{pf}"},
        "vfID": {"int": index},
        "dra.net/numaNode": {"int": numa},
        **extra,
    }
    return {"name": name, "attributes": attributes}


def slice_(
    node: str,
    devices: list[dict[str, Any]],
    *,
    pool: str | None = None,
    generation: int = 0,
    count: int = 1,
    driver: str = D,
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{node}-{generation}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": pool or node, "generation": generation, "resourceSliceCount": count},
            "devices": devices,
        },
    }


def node_vfs(node: str, pfs: int = 2, per_pf: int = 2, numa_by_pf: bool = False) -> dict[str, Any]:
    return slice_(
        node,
        [vf(p, i, numa=p if numa_by_pf else 0) for p in range(pfs) for i in range(per_pf)],
    )


def request(
    name: str = "vf",
    count: int = 1,
    selectors: list[str] | None = None,
    mode: str = "ExactCount",
    **extra: Any,
) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": D, "allocationMode": mode, **extra}
    if mode == "ExactCount":
        exactly["count"] = count
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    return {"name": name, "exactly": exactly}


def claim(
    *requests: dict[str, Any],
    constraints: list[dict[str, Any]] | None = None,
    config: list[dict[str, Any]] | None = None,
    name: str = "c",
) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": list(requests) or [request()]}
    if constraints:
        devices["constraints"] = constraints
    if config:
        devices["config"] = config
    return {"metadata": {"namespace": "ns", "name": name}, "spec": {"devices": devices}}


def picks(allocation: Any) -> list[tuple[str, str, str]]:
    return [(r["request"], r["pool"], r["device"]) for r in allocation.results]


def run(c: dict[str, Any], slices: list[dict[str, Any]], in_use: Any = frozenset()) -> Any:
    return allocate(
        c,
        device_classes=CLASSES,
        pools=pools_from_slices(slices, driver=D),
        in_use=in_use,
        driver=D,
    )
