"""The operator against a dev cluster: N static claims created at once.

For each N it measures, with one kubernetes_asyncio client:

- the operator: claims allocated per second (first create sent -> last allocation
  seen on a watch) and p50/p99 of create-returned -> allocation-seen per claim;
- the floor, in the same run and with the same client and concurrency: the raw
  rate of ``resourceclaims/status`` PATCHes writing an allocation to N claims
  of a class the operator ignores. The operator needs two claim writes (metadata,
  then status) and one Event per claim, so floor/3 is what strict write-bound
  work would give.

    sriov-dra devcluster up
    .venv/bin/python bench/bench_operator_claims.py [--counts 100,1000] [--kubeconfig K]

The operator runs as a separate process (``sriov-dra operator``), started here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from sriov_dra.constants import (  # noqa: E402
    ATTR_PCI_ADDRESS,
    ATTR_PF_NAME,
    ATTR_VF_ID,
    DRIVER_NAME,
    PREFIX,
)
from sriov_dra.node_selector import node_selector  # noqa: E402
from sriov_dra_agent.cluster.device_status import released_entries  # noqa: E402

GROUP, VERSION = "resource.k8s.io", "v1"
MERGE = "application/merge-patch+json"
NODES = ("sim-node-1", "sim-node-2")
DEVICES_PER_SLICE = 128


def vf_device(index: int, group: str) -> dict[str, Any]:
    pf, vf = divmod(index, 256)
    pci = f"0000:{0x40 + pf:02x}:{vf // 8:02x}.{vf % 8}"
    return {
        "name": pci.replace(":", "-").replace(".", "-"),
        "attributes": {
            ATTR_PCI_ADDRESS: {"string": pci},
            ATTR_PF_NAME: {"string": f"benchpf{pf}"},
            ATTR_VF_ID: {"int": vf},
            f"{PREFIX}/benchGroup": {"string": group},
        },
    }


def slices_for(group: str, vfs: int) -> list[dict[str, Any]]:
    """``vfs`` VFs split over the sim nodes, one pool per node, 128 devices per slice."""
    out = []
    per_node = -(-vfs // len(NODES))
    for node in NODES:
        devices = [vf_device(i, group) for i in range(per_node)]
        chunks = [devices[i : i + DEVICES_PER_SLICE] for i in range(0, per_node, DEVICES_PER_SLICE)]
        for n, chunk in enumerate(chunks):
            out.append(
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceSlice",
                    "metadata": {"name": f"{group}-{node}-{n}", "labels": {"bench": group}},
                    "spec": {
                        "driver": DRIVER_NAME,
                        "nodeName": node,
                        "pool": {
                            "name": f"{node}.{group}",
                            "generation": 1,
                            "resourceSliceCount": len(chunks),
                        },
                        "devices": chunk,
                    },
                }
            )
    return out


def device_class(name: str, expression: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name, "labels": {"bench": name}},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def claim_body(name: str, device_class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {
            "devices": {
                "requests": [{"name": "vf", "exactly": {"deviceClassName": device_class_name}}]
            }
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Operator:
    """``sriov-dra operator`` as a child process."""

    def __init__(self, kubeconfig: str, profile: str = "") -> None:
        self.log = Path(tempfile.mkstemp(prefix="bench-operator-", suffix=".log")[1])
        command = [str(Path(sys.executable).parent / "sriov-dra")]
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "sriov_dra.cli"]
        self.proc = subprocess.Popen(
            [
                *command,
                "operator",
                f"--kubeconfig={kubeconfig}",
                "--metrics-port=0",
                "--health-port=0",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        while b'"message": "state listed"' not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"operator did not start:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def gather_limited(limit: int, coros: list[Any]) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def measure_operator(
    api: client.ApiClient, n: int, concurrency: int
) -> tuple[float, float, float, float]:
    """(claims/s, p50 s, p99 s, wall s) for N claims against N VFs."""
    # Any: the client's stubs know neither dict bodies nor _content_type.
    objects: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    group = f"bench-{n}-{secrets.token_hex(3)}"
    ns = group
    await core.create_namespace({"metadata": {"name": ns}})
    expression = (
        f"device.driver == '{DRIVER_NAME}' && device.attributes['{PREFIX}'].benchGroup == '{group}'"
    )
    await objects.create_cluster_custom_object(
        GROUP, VERSION, "deviceclasses", device_class(group, expression)
    )
    for s in slices_for(group, n):
        await objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", s)
    await asyncio.sleep(1)  # let the operator's watches deliver class and slices

    created: dict[str, float] = {}
    allocated: dict[str, float] = {}
    done = asyncio.Event()

    def seen(body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if (body.get("status") or {}).get("allocation") and name not in allocated:
            allocated[name] = time.perf_counter()
            if len(allocated) == n:
                done.set()

    async def watch_allocations() -> None:
        # A watch can end early (the apiserver closes slow or long watches): relist and
        # go on; a claim first seen allocated in a relist counts from then (a little late).
        version = ""
        while not done.is_set():
            if version:
                listed = await objects.list_namespaced_custom_object(
                    GROUP, VERSION, ns, "resourceclaims"
                )
                for body in listed["items"]:
                    seen(body)
                version = listed["metadata"]["resourceVersion"]
            w = watch.Watch()
            async with w.stream(
                objects.list_namespaced_custom_object, GROUP, VERSION, ns, "resourceclaims",
                timeout_seconds=600, resource_version=version or None,
            ) as stream:  # fmt: skip
                async for event in stream:
                    seen(event["object"])
                    version = event["object"]["metadata"]["resourceVersion"]
                    if done.is_set():
                        return
            version = version or "0"

    watcher = asyncio.create_task(watch_allocations())
    await asyncio.sleep(0.5)

    async def create(i: int) -> None:
        name = f"c-{i:05d}"
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, ns, "resourceclaims", claim_body(name, group)
        )
        created[name] = time.perf_counter()

    start = time.perf_counter()
    await gather_limited(concurrency, [create(i) for i in range(n)])
    await asyncio.wait_for(done.wait(), timeout=600)
    end = max(allocated.values())
    watcher.cancel()
    latencies = [allocated[k] - created[k] for k in created]

    await cleanup_claims(api, ns, concurrency)
    await core.delete_namespace(ns)
    await objects.delete_collection_cluster_custom_object(
        GROUP, VERSION, "resourceslices", label_selector=f"bench={group}"
    )
    await objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", group)
    wall = end - start
    return n / wall, percentile(latencies, 0.5), percentile(latencies, 0.99), wall


async def cleanup_claims(api: client.ApiClient, ns: str, concurrency: int) -> None:
    """Play the agent (condition Released), delete, wait until the operator let them go."""
    objects: Any = client.CustomObjectsApi(api)
    items = (await objects.list_namespaced_custom_object(GROUP, VERSION, ns, "resourceclaims"))[
        "items"
    ]

    async def release(body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        allocation = (body.get("status") or {}).get("allocation")
        if allocation:
            ours = [r for r in allocation["devices"]["results"] if r["driver"] == DRIVER_NAME]
            entries = released_entries(body, ours, driver=DRIVER_NAME, node=ours[0]["pool"])
            await objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns, "resourceclaims", name, {"status": {"devices": entries}},
                _content_type=MERGE,
            )  # fmt: skip
        await objects.delete_namespaced_custom_object(GROUP, VERSION, ns, "resourceclaims", name)

    await gather_limited(concurrency, [release(b) for b in items])
    deadline = time.monotonic() + 300
    while (await objects.list_namespaced_custom_object(GROUP, VERSION, ns, "resourceclaims"))[
        "items"
    ]:
        if time.monotonic() > deadline:
            raise SystemExit(f"claims in {ns} were not released within 300 s")
        await asyncio.sleep(0.5)


async def measure_floor(api: client.ApiClient, n: int, concurrency: int) -> float:
    """Raw status PATCHes per second: N allocations written straight to ignored claims."""
    # Any: the client's stubs know neither dict bodies nor _content_type.
    objects: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    name = f"floor-{n}-{secrets.token_hex(3)}"
    await core.create_namespace({"metadata": {"name": name}})
    await objects.create_cluster_custom_object(
        GROUP, VERSION, "deviceclasses", device_class(name, "device.driver == 'floor.example'")
    )
    await gather_limited(
        concurrency,
        [
            objects.create_namespaced_custom_object(
                GROUP, VERSION, name, "resourceclaims", claim_body(f"c-{i:05d}", name)
            )
            for i in range(n)
        ],
    )

    def status(i: int) -> dict[str, Any]:
        return {
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {
                                "request": "vf",
                                "driver": "floor.example",
                                "pool": "floor",
                                "device": f"d{i}",
                            }
                        ]
                    },
                    "nodeSelector": node_selector(NODES[0]),
                }
            }
        }

    start = time.perf_counter()
    await gather_limited(
        concurrency,
        [
            objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                name,
                "resourceclaims",
                f"c-{i:05d}",
                status(i),
                _content_type=MERGE,
            )
            for i in range(n)
        ],
    )
    rate = n / (time.perf_counter() - start)
    await core.delete_namespace(name)
    await objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", name)
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,1000")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", default="", help="cProfile the operator into this file")
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", "/var/tmp/sriov-dra/devcluster/kubeconfig"),
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    if not await asyncio.to_thread(os.path.isfile, args.kubeconfig):
        raise SystemExit(
            f"no kubeconfig at {args.kubeconfig}; fix: start the dev cluster first "
            "(.venv/bin/sriov-dra devcluster up) or pass --kubeconfig"
        )
    await config.load_kube_config(config_file=args.kubeconfig)
    operator = Operator(args.kubeconfig, args.profile)
    rows = []
    try:
        await operator.ready()
        async with client.ApiClient() as api:
            for n in counts:
                floor = await measure_floor(api, n, args.concurrency)
                rate, p50, p99, wall = await measure_operator(api, n, args.concurrency)
                rows.append((n, rate, p50, p99, wall, floor))
    finally:
        operator.stop()
    print(f"\noperator log: {operator.log}")
    print(f"client concurrency {args.concurrency}; floor = raw status PATCH/s, same client\n")
    header = (
        f"{'claims':>7} {'alloc/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'wall s':>7} "
        f"{'floor PATCH/s':>14} {'alloc/floor':>11}"
    )
    print(header)
    print("-" * len(header))
    for n, rate, p50, p99, wall, floor in rows:
        print(
            f"{n:>7} {rate:>9.1f} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} {wall:>7.2f} "
            f"{floor:>14.1f} {rate / floor:>11.2f}"
        )
    print(json.dumps([dict(zip(
        ["claims", "alloc_per_s", "p50_s", "p99_s", "wall_s", "floor_patch_per_s"], r, strict=True
    )) for r in rows]))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
