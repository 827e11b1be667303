"""The upstream demos' data and checks (pure), and the example GPU driver's pure parts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from sriov_dra.constants import ATTR_PCIE_ROOT, ATTR_PF_NAME, DRIVER_NAME
from sriov_dra_devcluster import example_gpu_driver as gpu
from sriov_dra_devcluster.upstream_demos import (
    DEMOS,
    DEMOS_DIR,
    NOT_RUN,
    RESOURCE_NAME_ATTRIBUTE,
    AllocatedDevice,
    DemoOutcome,
    PodCheck,
    UpstreamDemo,
    allocated_devices,
    gpu_environment,
    leftover_leases,
    pod_problems,
    publication_problems,
    published_attributes,
    published_vfs,
    summary_table,
)

UPSTREAM_DEMOS = {
    "claim-for-deployment", "cxi-device", "host-device-kernel", "host-device-vfio",
    "multiple-vf-claim", "multus-integration-single-vf", "multus-integration-multiple-vf",
    "multus-integration-multiple-resourceclaim", "resource-alignment", "resource-filtering",
    "resource-policies", "resourceclaim", "single-vf-claim", "vfio-driver",
}  # fmt: skip
"""Every folder of the Go driver's demo/."""


def by_name(name: str) -> UpstreamDemo:
    return next(d for d in DEMOS if d.name == name)


def test_every_upstream_demo_runs_or_says_why_not() -> None:
    assert {d.name for d in DEMOS} | {name for name, _ in NOT_RUN} == UPSTREAM_DEMOS
    assert not {d.name for d in DEMOS} & {name for name, _ in NOT_RUN}
    stored = {p.parent.name for p in DEMOS_DIR.glob("*/*.yaml")}
    assert stored == {d.name for d in DEMOS}


def test_facts_read_from_the_manifests() -> None:
    facts = {d.name: d.facts() for d in DEMOS}
    assert facts["claim-for-deployment"].pods == 2
    assert facts["claim-for-deployment"].subnets == (ipaddress.IPv4Network("10.0.2.0/24"),)
    assert facts["multiple-vf-claim"].vfs_per_pod == 2
    assert facts["multiple-vf-claim"].network_names == ("vf-test3",)
    assert (facts["resource-alignment"].namespace, facts["resource-alignment"].vfs_per_pod) == (
        "vf-test5",
        1,
    )
    assert facts["resourceclaim"].pods == 1


def vf(device: str, pf: str, root: str = "pci0000:3a", name: str = "") -> AllocatedDevice:
    attributes = {ATTR_PF_NAME: {"string": pf}, ATTR_PCIE_ROOT: {"string": root}}
    if name:
        attributes[RESOURCE_NAME_ATTRIBUTE] = {"string": name}
    return AllocatedDevice(DRIVER_NAME, "node-1", device, "vf", attributes)


def test_a_pod_keeping_the_promises_has_no_problem() -> None:
    demo = by_name("resource-policies")
    pod = PodCheck("pod0", "node-1", [vf("d1", "eth1", name="eth1_resource")],
                   {"net1": ("10.0.1.7/24",)})  # fmt: skip
    assert pod_problems(demo, demo.facts(), pod) == []


def test_each_broken_promise_is_named() -> None:
    demo = by_name("resource-policies")
    pod = PodCheck("pod0", "node-1", [vf("d1", "eth0", name="eth0_resource")],
                   {"net1": ("10.9.9.9/24",)})  # fmt: skip
    problems = pod_problems(demo, demo.facts(), pod)
    assert len(problems) == 3
    assert "net1 has no address in 10.0.1.0/24" in problems[0]
    assert "resourceName 'eth0_resource', not 'eth1_resource'" in problems[1]
    assert "is of PF eth0" in problems[2]
    missing = PodCheck("pod0", "node-1", [], {})
    assert pod_problems(demo, demo.facts(), missing) == ["pod0: 0 VFs allocated, the demo wants 1"]


def test_the_gpu_must_be_in_the_environment_and_on_the_vfs_root() -> None:
    demo = by_name("resource-alignment")
    gpu0 = AllocatedDevice(gpu.DRIVER, "node-1", "gpu-1", "gpu",
                           {ATTR_PCIE_ROOT: {"string": "pci0000:3c"}})  # fmt: skip
    good = PodCheck("pod0", "node-1", [vf("d1", "eth1", "pci0000:3c"), gpu0],
                    {"net1": ("10.0.1.2/24",)}, gpu_env={"GPU_DEVICE_0": "gpu-1"})  # fmt: skip
    assert pod_problems(demo, demo.facts(), good) == []
    bad = PodCheck("pod0", "node-1", [vf("d1", "eth0", "pci0000:3a"), gpu0],
                   {"net1": ("10.0.1.2/24",)}, gpu_env={})  # fmt: skip
    problems = pod_problems(demo, demo.facts(), bad)
    assert [p.split(":")[1].strip() for p in problems] == [
        "GPU_DEVICE_0=None, not the allocated gpu-1",
        "VF and GPU on different PCIe roots",
    ]


def test_devices_take_their_attributes_from_the_slices() -> None:
    slices = [{"spec": {"driver": DRIVER_NAME, "pool": {"name": "node-1"},
                        "devices": [{"name": "d1", "attributes": {ATTR_PF_NAME: {"string": "eth1"},
                                     f"{DRIVER_NAME}/vfID": {"int": 1}}}]}}]  # fmt: skip
    claim = {"status": {"allocation": {"devices": {"results": [
        {"driver": DRIVER_NAME, "pool": "node-1", "device": "d1", "request": "vf"}]}}}}  # fmt: skip
    (device,) = allocated_devices(claim, published_attributes(slices))
    assert (device.attribute(ATTR_PF_NAME), device.vf_netdev) == ("eth1", "eth1v1")


def test_small_parsers() -> None:
    assert gpu_environment("PATH=/bin\nGPU_DEVICE_0=gpu-1\n") == {"GPU_DEVICE_0": "gpu-1"}
    assert leftover_leases(["lock", "last_reserved_ip.0", "10.0.1.3"]) == ["10.0.1.3"]


def test_the_summary_lists_every_upstream_demo() -> None:
    outcomes = [DemoOutcome(d, pods=1, ready_seconds=2.0, released_seconds=1.0) for d in DEMOS]
    outcomes[0].failure = "timed out"
    lines = summary_table(outcomes)
    assert len(lines) == 1 + len(UPSTREAM_DEMOS)
    assert lines[1].split()[:2] == ["single-vf-claim", "FAIL"] and lines[1].endswith("timed out")
    assert lines[2].split()[:2] == ["multiple-vf-claim", "PASS"]
    assert lines[-1].split()[:3] == ["resource-filtering", "not", "run"]


def test_example_gpu_driver_one_gpu_per_pcie_root(tmp_path: Path) -> None:
    for name in ("pci0000:3c", "pci0000:3a", "platform"):
        (tmp_path / "devices" / name).mkdir(parents=True)
    roots = gpu.pcie_roots(tmp_path)
    assert roots == ["pci0000:3a", "pci0000:3c"]
    devices = gpu.gpu_devices("node-1", roots)
    assert [(d["name"], d["attributes"][gpu.PCIE_ROOT_ATTRIBUTE]) for d in devices] == [
        ("gpu-0", {"string": "pci0000:3a"}),
        ("gpu-1", {"string": "pci0000:3c"}),
    ]
    assert gpu.pcie_roots(tmp_path / "missing") == []


def test_example_gpu_driver_prepares_its_own_results_only() -> None:
    claim = {"status": {"allocation": {"devices": {"results": [
        {"driver": DRIVER_NAME, "pool": "node-1", "device": "vf", "request": "vf"},
        {"driver": gpu.DRIVER, "pool": "node-1", "device": "gpu-1", "request": "gpu"},
        {"driver": gpu.DRIVER, "pool": "node-2", "device": "gpu-0", "request": "gpu"},
    ]}}}}  # fmt: skip
    results = gpu.allocated_gpus(claim, "node-1")
    spec = gpu.cdi_spec("uid-1", results)
    assert (spec["kind"], spec["cdiVersion"]) == ("gpu.example.com/gpu", "0.3.0")
    assert spec["devices"] == [
        {"name": "uid-1-gpu-1", "containerEdits": {"env": ["GPU_DEVICE_0=gpu-1"]}}
    ]
    # A claim UID may start with a digit: CDI accepts such a device name from 0.5.0 on.
    assert gpu.cdi_spec("009323c3-34fe", results)["cdiVersion"] == "0.5.0"


def test_example_gpu_driver_installs_its_class_and_mounts_this_file() -> None:
    objects = gpu.manifests("img:1", Path("/src/example_gpu_driver.py"))
    kinds = {o["kind"]: o for o in objects}
    assert kinds["DeviceClass"]["metadata"]["name"] == "gpu.example.com"
    pod = kinds["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "img:1"
    module = next(v for v in pod["volumes"] if v["name"] == "module")
    assert module["hostPath"] == {"path": "/src/example_gpu_driver.py", "type": "File"}


def test_the_policy_publishes_on_its_node_only_with_each_pfs_resource_name() -> None:
    demo = by_name("resource-policies")
    hostnames = {"node-1": "dra-ctlplane-0.dra.lab", "node-2": "node-2"}
    good = [vf("a", "eth0", name="eth0_resource"), vf("b", "eth1", name="eth1_resource")]
    assert publication_problems(demo, good, hostnames) == []
    stray = AllocatedDevice(DRIVER_NAME, "node-2", "c", "", {})
    assert publication_problems(demo, [good[0], stray], hostnames) == [
        "node-2 publishes 1 VFs; the policy selects no node but dra-ctlplane-0.dra.lab"
    ]
    wrong = [vf("a", "eth0", name="eth1_resource")]
    assert publication_problems(demo, wrong, hostnames) == [
        "node-1 VF a: resourceName 'eth1_resource', not 'eth0_resource'"
    ]
    assert publication_problems(demo, [], hostnames) == [
        "node-1 (dra-ctlplane-0.dra.lab) publishes no VF"
    ]
    assert publication_problems(by_name("single-vf-claim"), [], hostnames) == []
    slices = [{"spec": {"driver": DRIVER_NAME, "pool": {"name": "node-1"},
                        "devices": [{"name": "a", "attributes": {}}]}},
              {"spec": {"driver": gpu.DRIVER, "pool": {"name": "node-1"},
                        "devices": [{"name": "gpu-0", "attributes": {}}]}}]  # fmt: skip
    assert [d.device for d in published_vfs(published_attributes(slices))] == ["a"]
