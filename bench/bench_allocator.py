"""The pure allocator at 10,000 devices and 10,000 claims: microseconds per decision.

Prints a table; each row is timed in this run, beside two baselines from the same
run: one bare CEL evaluation per device (with a prebuilt context), and a trivial
first-free scan (walk the node-ordered device list, take the first device not in
the taken set) that knows nothing of classes, selectors or constraints.

    .venv/bin/python bench/bench_allocator.py [--nodes 100] [--vfs-per-pf 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from sriov_dra.allocator import allocate
from sriov_dra.cel_selectors import DeviceInput, compile_selector
from sriov_dra.constants import DRIVER_NAME as D
from sriov_dra.device_pools import DeviceKey, DeviceUsage, pools_from_slices
from sriov_dra.errors import NoDeviceAvailable

CLASS = {"spec": {"selectors": [{"cel": {"expression": f'device.driver == "{D}"'}}]}}
CLASSES = {D: CLASS}
REQUEST_SELECTOR = f'device.attributes["{D}"].linkType == "ethernet"'


def make_slices(nodes: int, pfs: int, vfs_per_pf: int, version: int = 1) -> list[dict[str, Any]]:
    """One slice per node (<= 128 devices), devices named like the agent names them.

    A new ``version`` (resourceVersion) makes the allocator start cold: no memoized
    selector results carry over from an earlier scenario.
    """
    slices = []
    for n in range(nodes):
        node = f"node-{n:04d}"
        devices = [
            {
                "name": f"0000-{pf + 1:02x}-{vf // 8:02x}-{vf % 8}",
                "attributes": {
                    "PFName": {"string": f"ens{pf}"},
                    "vfID": {"int": vf},
                    "linkType": {"string": "ethernet"},
                    "dra.net/numaNode": {"int": pf % 2},
                },
            }
            for pf in range(pfs)
            for vf in range(vfs_per_pf)
        ]
        slices.append(
            {
                "metadata": {"name": node, "uid": f"uid-{n}", "resourceVersion": str(version)},
                "spec": {
                    "driver": D,
                    "nodeName": node,
                    "pool": {"name": node, "generation": 0, "resourceSliceCount": 1},
                    "devices": devices,
                },
            }
        )
    return slices


def claim(index: int, count: int, same_pf: bool) -> dict[str, Any]:
    devices: dict[str, Any] = {
        "requests": [
            {
                "name": "vf",
                "exactly": {
                    "deviceClassName": D,
                    "count": count,
                    "selectors": [{"cel": {"expression": REQUEST_SELECTOR}}],
                },
            }
        ]
    }
    if same_pf:
        devices["constraints"] = [{"matchAttribute": f"{D}/PFName"}]
    return {"metadata": {"namespace": "bench", "name": f"c{index}"}, "spec": {"devices": devices}}


def run_claims(
    slices: list[dict[str, Any]], claims: int, count: int, same_pf: bool, usage: bool
) -> tuple[float, float, int]:
    """(first decision s, mean s per later decision, allocated) for a fresh pool set."""
    pools = pools_from_slices(slices, driver=D)
    in_use: Any = DeviceUsage() if usage else set()
    first = 0.0
    allocated = 0
    start = time.perf_counter()
    for i in range(claims):
        t0 = time.perf_counter()
        try:
            result = allocate(
                claim(i, count, same_pf),
                device_classes=CLASSES,
                pools=pools,
                in_use=in_use,
                driver=D,
            )
        except NoDeviceAvailable:
            continue
        finally:
            if i == 0:
                first = time.perf_counter() - t0
        allocated += 1
        for key in result.keys:
            if usage:
                in_use.add(key, f"bench/c{i}")
            else:
                in_use.add(key)
    total = time.perf_counter() - start
    return first, (total - first) / max(1, claims - 1), allocated


def baseline_cel(slices: list[dict[str, Any]]) -> float:
    """Seconds per bare CEL evaluation (prebuilt context, the request selector)."""
    selector = compile_selector(REQUEST_SELECTOR)
    inputs = [DeviceInput(d, driver=D) for s in slices for d in s["spec"]["devices"]]
    for device in inputs:
        _ = device.context
    start = time.perf_counter()
    for device in inputs:
        selector.evaluate(device)
    return (time.perf_counter() - start) / len(inputs)


def baseline_scan(slices: list[dict[str, Any]], claims: int) -> float:
    """Seconds per decision of a trivial first-free scan over all devices."""
    ordered = [
        DeviceKey(D, s["spec"]["pool"]["name"], d["name"])
        for s in sorted(slices, key=lambda s: s["spec"]["nodeName"])
        for d in sorted(s["spec"]["devices"], key=lambda d: d["name"])
    ]
    taken: set[DeviceKey] = set()
    start = time.perf_counter()
    for _ in range(claims):
        for key in ordered:
            if key not in taken:
                taken.add(key)
                break
    return (time.perf_counter() - start) / claims


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--pfs", type=int, default=2)
    parser.add_argument("--vfs-per-pf", type=int, default=50)
    parser.add_argument("--claims", type=int, default=10_000)
    args = parser.parse_args()
    slices = make_slices(args.nodes, args.pfs, args.vfs_per_pf)
    devices = args.nodes * args.pfs * args.vfs_per_pf
    print(
        f"{devices} devices on {args.nodes} nodes ({args.pfs} PFs x {args.vfs_per_pf} VFs), "
        f"{args.claims} claims, Python {sys.version.split()[0]}"
    )

    cel_us = baseline_cel(slices) * 1e6
    scan_us = baseline_scan(slices, args.claims) * 1e6
    rows: list[tuple[str, float, float, int]] = []

    def fresh(version: int) -> list[dict[str, Any]]:
        return make_slices(args.nodes, args.pfs, args.vfs_per_pf, version)

    scenarios: list[tuple[str, Callable[[], tuple[float, float, int]]]] = [
        ("1 VF, DeviceUsage", lambda: run_claims(fresh(2), args.claims, 1, False, True)),
        ("1 VF, plain set", lambda: run_claims(fresh(3), args.claims, 1, False, False)),
        (
            "2 VFs same PF, DeviceUsage",
            lambda: run_claims(fresh(4), args.claims // 2, 2, True, True),
        ),
        (
            "2 VFs same PF, plain set",
            lambda: run_claims(fresh(5), args.claims // 2, 2, True, False),
        ),
    ]
    for label, scenario in scenarios:
        first, per, allocated = scenario()
        rows.append((label, first * 1e6, per * 1e6, allocated))

    print()
    print(
        f"{'scenario':<30} {'1st decision us':>16} {'us/decision':>12} {'allocated':>10} "
        f"{'x CEL eval':>11} {'x first-free scan':>18}"
    )
    print(
        f"{'baseline: bare CEL eval/device':<30} {'':>16} {cel_us:>12.2f} {'':>10} "
        f"{1:>11.1f} {'':>18}"
    )
    print(
        f"{'baseline: first-free scan':<30} {'':>16} {scan_us:>12.2f} {'':>10} "
        f"{scan_us / cel_us:>11.1f} {1:>18.1f}"
    )
    for label, first_us, per_us, allocated in rows:
        print(
            f"{label:<30} {first_us:>16.0f} {per_us:>12.2f} {allocated:>10} "
            f"{per_us / cel_us:>11.1f} {per_us / scan_us:>18.2f}"
        )
    print()
    print(
        "1st decision includes evaluating the class and request selectors on every device "
        "once (memoized afterwards)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
