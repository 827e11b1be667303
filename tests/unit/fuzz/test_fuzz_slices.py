"""ResourceSlice devices and claims fuzzed into the allocator: only NoDeviceAvailable and
SelectorError escape, what it allocates keeps every rule, and no device is in two results.

Slices and claims have the shapes the apiserver admits (it validates them before we see
them); names, attributes, counts, modes, selectors and constraints vary freely within them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st
from sriov_dra.allocation_result import Allocation
from sriov_dra.allocator import allocate
from sriov_dra.cel_selectors import DeviceInput, compile_selector
from sriov_dra.device_pools import DeviceKey, DeviceUsage, Pool, pools_from_slices
from sriov_dra.errors import InvalidVfConfig, NoDeviceAvailable, SelectorError
from sriov_dra.naming import is_device_name
from sriov_dra.node_selector import allocation_node
from sriov_dra.vfconfig import if_name_problem
from sriov_dra_operator.claim_config import allocation_records, effective_configs
from sriov_dra_operator.slices import published_devices

D = "sriovnetwork.k8snetworkplumbingwg.io"
CLASSES = {
    D: {
        "metadata": {"name": D},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{D}"'}}]},
    }
}
PCI_NAMES = [f"0000-0{pf}-00-{vf}" for pf in (1, 2) for vf in range(2, 6)]
ATTRIBUTES = ["dra.net/numaNode", f"{D}/PFName", "PFName", "vfID", f"{D}/pciAddress", "version"]

PCI = st.sampled_from(PCI_NAMES)
NAMES = st.one_of(
    PCI, PCI, PCI, st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
)
"""Mostly names our agent makes; some of a foreign publisher's (not offered)."""
VALUES = (
    st.fixed_dictionaries({"int": st.integers(min_value=-1, max_value=2)})
    | st.fixed_dictionaries({"bool": st.booleans()})
    | st.fixed_dictionaries({"string": st.sampled_from(["ens1f0", "ens1f1", "0000:01:00.2", ""])})
    | st.fixed_dictionaries({"version": st.sampled_from(["1.2.3", "2.0.0-rc.1"])})
)
DEVICE = st.fixed_dictionaries(
    {"name": NAMES},
    optional={"attributes": st.dictionaries(st.sampled_from(ATTRIBUTES), VALUES, max_size=4)},
)
SLICE = st.builds(
    lambda driver, node, pool, generation, count, devices: {
        "metadata": {"name": f"{pool or node}-{generation}"},
        "spec": {
            "driver": driver,
            "pool": {
                "name": pool or node or "cluster",
                "generation": generation,
                "resourceSliceCount": count,
            },
            "devices": devices,
            **({"nodeName": node} if node else {"allNodes": True}),
        },
    },
    st.sampled_from([D] * 5 + ["gpu.example.com"]),
    st.sampled_from(["node-a", "node-b"] * 4 + [""]),
    st.sampled_from([""] * 6 + ["shared"]),
    st.sampled_from([0, 0, 0, 1, 2]),
    st.sampled_from([1] * 6 + [2]),
    st.lists(DEVICE, min_size=1, max_size=6),
)
"""Mostly complete node-local pools named after their node; some spanning nodes, cluster-wide,
of another driver, of an older generation or incomplete."""
SELECTORS = st.sampled_from(
    [
        'device.attributes["dra.net"].numaNode == 0',
        '"numaNode" in device.attributes["dra.net"] && device.attributes["dra.net"].numaNode == 1',
        f'device.attributes["{D}"].PFName == "ens1f0"',
        f'has(device.attributes["{D}"].vfID) && device.attributes["{D}"].vfID >= 0',
        'device.attributes["dra.net"].numaNode > 0 || true',
        f'device.driver == "{D}"',
        f'device.attributes["{D}"].version.isGreaterThan(semver("1.0.0"))',
        "size(device.attributes) > 0",
    ]
)
EXACTLY = st.fixed_dictionaries(
    {"deviceClassName": st.sampled_from([D] * 9 + ["missing"])},
    optional={
        "allocationMode": st.sampled_from(["ExactCount"] * 3 + ["All"]),
        "count": st.sampled_from([1, 1, 1, 2, 3]),
        "selectors": st.lists(SELECTORS.map(lambda e: {"cel": {"expression": e}}), max_size=2),
        "adminAccess": st.sampled_from([False] * 5 + [True]),
    },
)

VFCONFIG = {"apiVersion": f"{D}/v1alpha1", "kind": "VfConfig"}
CONFIG = st.fixed_dictionaries(
    {
        "opaque": st.fixed_dictionaries(
            {
                "driver": st.sampled_from([D, D, "gpu.example.com"]),
                "parameters": st.dictionaries(
                    st.sampled_from(["ifName", "netAttachDefName", "driver", "addVhostMount", "x"]),
                    st.sampled_from(["net1", "eth0", "", "vfio-pci", "Bad_Name", True, 7]),
                    max_size=3,
                ).map(lambda fields: {**VFCONFIG, **fields}),
            }
        )
    },
    optional={"requests": st.lists(st.sampled_from(["r0", "r1", "r0/s0"]), max_size=2)},
)
"""Claim config entries: VfConfigs of our driver, valid or not, and another driver's."""


@st.composite
def claims(draw: st.DrawFn, name: str = "c") -> dict[str, Any]:
    requests = []
    for index in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        if draw(st.sampled_from([False] * 3 + [True])):
            subs = draw(st.lists(EXACTLY, min_size=1, max_size=2))
            first = [{"name": f"s{i}", **sub} for i, sub in enumerate(subs)]
            requests.append({"name": f"r{index}", "firstAvailable": first})
        else:
            requests.append({"name": f"r{index}", "exactly": draw(EXACTLY)})
    devices: dict[str, Any] = {"requests": requests}
    constraints = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "matchAttribute": st.sampled_from(
                        ["dra.net/numaNode", f"{D}/PFName", "x.io/none"]
                    )
                },
                optional={
                    "requests": st.lists(st.sampled_from(["r0", "r1"]), max_size=2, unique=True)
                },
            ),
            max_size=1,
        )
    )
    if constraints:
        devices["constraints"] = constraints
    config = draw(st.lists(CONFIG, max_size=2))
    if config:
        devices["config"] = config
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
        "spec": {"devices": devices},
    }


def _alternatives(claim: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for request in claim["spec"]["devices"]["requests"]:
        for sub in request.get("firstAvailable") or ():
            found[f"{request['name']}/{sub['name']}"] = sub
        if "exactly" in request:
            found[request["name"]] = request["exactly"]
    return found


def _check(
    claim: Mapping[str, Any],
    allocation: Allocation,
    pools: list[Pool],
    taken: set[DeviceKey],
    slices: list[Any],
) -> None:
    """Every rule an allocation must keep, checked from the inputs, not from the allocator."""
    keys = allocation.keys
    assert len(set(keys)) == len(keys), "a device twice in one claim"
    usable = {
        (p.name, d.key.device): (p, d)
        for p in pools
        if not p.problem and p.complete
        for d in p.devices
    }
    alternatives = _alternatives(claim)
    by_request: dict[str, list[DeviceKey]] = {}
    for result, key in zip(allocation.results, keys, strict=True):
        pool, device = usable[(key.pool, key.device)]
        assert key.driver == D and pool.node == allocation.node
        assert is_device_name(key.device), "a device no agent could find was offered"
        spec = alternatives[result["request"]]
        assert bool(result.get("adminAccess")) == bool(spec.get("adminAccess"))
        assert result.get("adminAccess") or key not in taken, "a taken device allocated again"
        for selector in [*CLASSES[D]["spec"]["selectors"], *(spec.get("selectors") or ())]:
            assert compile_selector(selector["cel"]["expression"]).evaluate(
                DeviceInput(device.data, driver=D)
            )
        by_request.setdefault(result["request"], []).append(key)
    for request in claim["spec"]["devices"]["requests"]:
        chosen = [name for name in by_request if name.split("/")[0] == request["name"]]
        assert len(chosen) == 1, f"request {request['name']} allocated {len(chosen)} alternatives"
        spec = alternatives[chosen[0]]
        if spec.get("allocationMode", "ExactCount") == "ExactCount":
            assert len(by_request[chosen[0]]) == (spec.get("count") or 1)
    for constraint in claim["spec"]["devices"].get("constraints") or ():
        covered = [
            key
            for name, found in by_request.items()
            if not constraint.get("requests") or name.split("/")[0] in constraint["requests"]
            for key in found
        ]
        values = {
            usable[(k.pool, k.device)][1].attribute(constraint["matchAttribute"]) for k in covered
        }
        assert len(values) <= 1 and None not in values, f"matchAttribute {constraint} broken"
    status = allocation.status_allocation(claim, CLASSES)
    assert allocation_node(status) == allocation.node
    # The operator's records of the allocation (the known case: these raised ValueError).
    configs = effective_configs(claim, CLASSES, driver=D)
    records = allocation_records(
        allocation.results, allocation.node, configs, published_devices(slices, driver=D), {}
    )
    assert [(r.pool, r.device) for r in records] == [(k.pool, k.device) for k in keys]
    names = [r.if_name for r in records]
    assert len(set(names)) == len(names) and not any(map(if_name_problem, names))


def _slice(device: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "x"},
        "spec": {
            "driver": D,
            "nodeName": "node-a",
            "pool": {"name": "node-a", "generation": 0, "resourceSliceCount": 1},
            "devices": [device],
        },
    }


ONE_VF = {
    "metadata": {"namespace": "ns", "name": "c", "uid": "u"},
    "spec": {"devices": {"requests": [{"name": "r0", "exactly": {"deviceClassName": D}}]}},
}


@given(st.lists(SLICE, min_size=1, max_size=4), claims(), st.sets(PCI, max_size=3))
# The known case: a device of our driver that no agent of ours published, with no pciAddress
# and a name of its own: allocated, then every reconcile raised ValueError in the records.
@example([_slice({"name": "0"})], ONE_VF, set())
# vfID published as a string: int() of it raised ValueError in the records.
@example(
    [_slice({"name": "0000-01-00-2", "attributes": {"vfID": {"string": "ens1f0"}}})], ONE_VF, set()
)
def test_one_claim_gets_a_lawful_allocation_or_a_typed_error(
    slices: list[dict[str, Any]], claim: dict[str, Any], held: set[str]
) -> None:
    pools = pools_from_slices(slices, driver=D)
    taken = {DeviceKey(D, pool, name) for pool in ("node-a", "node-b") for name in held}
    try:
        # As the operator: the claim's config is validated first, then it is allocated.
        effective_configs(claim, CLASSES, driver=D)
    except InvalidVfConfig as error:
        event("InvalidVfConfig")
        assert error.field.startswith("spec.devices.config[") and error.fix
        return
    try:
        allocation = allocate(claim, device_classes=CLASSES, pools=pools, in_use=taken, driver=D)
    except NoDeviceAvailable as error:
        event("NoDeviceAvailable")
        assert error.field.startswith("spec.devices") and error.fix
        return
    except SelectorError as error:
        event("SelectorError")
        assert error.fix
        return
    event(f"allocated {len(allocation.results)} devices")
    _check(claim, allocation, pools, taken, slices)


@given(st.lists(SLICE, min_size=1, max_size=4), st.lists(claims(), min_size=2, max_size=6))
def test_claims_allocated_one_after_another_never_share_a_device(
    slices: list[dict[str, Any]], batch: list[dict[str, Any]]
) -> None:
    pools = pools_from_slices(slices, driver=D)
    usage = DeviceUsage()
    for index, claim in enumerate(batch):
        claim["metadata"]["name"] = f"c{index}"
        claim["spec"]["devices"].pop("config", None)
        try:
            allocation = allocate(
                claim, device_classes=CLASSES, pools=pools, in_use=usage, driver=D
            )
        except (NoDeviceAvailable, SelectorError) as error:
            event(type(error).__name__)
            continue
        event("allocated")
        _check(claim, allocation, pools, set(usage), slices)
        for result, key in zip(allocation.results, allocation.keys, strict=True):
            if not result.get("adminAccess"):
                assert usage.owner(key) is None, f"{key} already held by {usage.owner(key)}"
                usage.add(key, f"ns/c{index}")
