"""The operator against a dev cluster: N static claims created at once.

For each N it measures, in one run, with one kubernetes_asyncio client and the
same concurrency, each phase on its own DeviceClass and fresh ResourceSlices
(same layout, same CEL selector) so no phase sees another's devices:

- kube-scheduler (first, before the operator runs): N pods on the kwok nodes,
  each with a ResourceClaimTemplate asking for one VF; pods/s from the first pod
  create sent to the last ``status.allocation`` seen, and p50/p99 per pod from its
  create returned to its claim's allocation seen;
- the two-write floor: per claim, one metadata PATCH then one status PATCH
  (what the operator must write, since the status strategy resets metadata), on
  claims of a class the operator ignores; claims/s, the p50 round trip of one
  PATCH under that load, and claims/s for the create plus those two writes (the
  operator's window holds the creates too, on the same API server);
- the operator: claims/s (first create sent -> last allocation seen on a watch),
  p50/p99 of create-returned -> allocation-seen per claim, and the p99 of the part
  of each wait after the create burst was over (allocation-seen minus the later of
  its own create and the last create).

    sriov-dra devcluster up --nodes 0 --kwok-nodes 10
    .venv/bin/python bench/bench_operator_claims.py [--counts 100,1000] [--kubeconfig K]

The kwok nodes must hold N pods (110 each). The operator runs as a separate
process (``sriov-dra operator``), started after the scheduler phases. The last
line is for a reader: ``operator-claims N=<largest N>: X claims/s; floor-ratio R;
scheduler-ratio S; p99 P ms``.
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
DEVICES_PER_SLICE = 128
PODS_PER_KWOK_NODE = 110
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


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


def slices_for(group: str, vfs: int, nodes: list[str]) -> list[dict[str, Any]]:
    """``vfs`` VFs split over ``nodes``, one pool per node, 128 devices per slice.

    Each pool is named after its node, as the agent names them (the operator's node
    label relies on it); a newer generation than any earlier phase's makes the pool
    fresh, so slices of a phase still being deleted are not counted.
    """
    out = []
    generation = time.time_ns()
    per_node = -(-vfs // len(nodes))
    for node in nodes:
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
                            "name": node,
                            "generation": generation,
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


def claim_spec(device_class_name: str) -> dict[str, Any]:
    return {
        "devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": device_class_name}}]}
    }


def claim_body(name: str, device_class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": claim_spec(device_class_name),
    }


def pod_body(name: str, template: str) -> dict[str, Any]:
    """A pod asking for one VF through ``template``; kwok nodes run nothing, so the image
    is never pulled."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"type": "kwok"},
            "containers": [
                {
                    "name": "c",
                    "image": "bench.invalid/none",
                    "resources": {"claims": [{"name": "vf"}]},
                }
            ],
            "resourceClaims": [{"name": "vf", "resourceClaimTemplateName": template}],
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


class AllocationWatch:
    """Watches the claims of one namespace and notes when each is first seen allocated,
    under a key (the claim's name, or the pod that owns it)."""

    def __init__(self, objects: Any, namespace: str, n: int, key: Any) -> None:
        self.objects = objects
        self.namespace = namespace
        self.n = n
        self.key = key
        self.allocated: dict[str, float] = {}
        self.done = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def _seen(self, body: dict[str, Any]) -> None:
        name = self.key(body)
        if name and (body.get("status") or {}).get("allocation") and name not in self.allocated:
            self.allocated[name] = time.perf_counter()
            if len(self.allocated) == self.n:
                self.done.set()

    async def _run(self) -> None:
        # A watch can end early (the apiserver closes slow or long watches): relist and
        # go on; a claim first seen allocated in a relist counts from then (a little late).
        objects, ns, version = self.objects, self.namespace, ""
        while not self.done.is_set():
            if version:
                listed = await objects.list_namespaced_custom_object(
                    GROUP, VERSION, ns, "resourceclaims"
                )
                for body in listed["items"]:
                    self._seen(body)
                version = listed["metadata"]["resourceVersion"]
            w = watch.Watch()
            async with w.stream(
                objects.list_namespaced_custom_object, GROUP, VERSION, ns, "resourceclaims",
                timeout_seconds=600, resource_version=version or None,
            ) as stream:  # fmt: skip
                async for event in stream:
                    self._seen(event["object"])
                    version = event["object"]["metadata"]["resourceVersion"]
                    if self.done.is_set():
                        return
            version = version or "0"

    async def wait(self) -> None:
        await asyncio.wait_for(self.done.wait(), timeout=900)
        self.task.cancel()


class Phase:
    """A namespace, a DeviceClass and fresh slices of N VFs over ``nodes``, all its own."""

    def __init__(self, api: client.ApiClient, kind: str, n: int, nodes: list[str]) -> None:
        # Any: the client's stubs know neither dict bodies nor _content_type.
        self.objects: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)
        self.name = f"{kind}-{n}-{secrets.token_hex(3)}"
        self.n = n
        self.nodes = nodes

    async def __aenter__(self) -> Phase:
        await self.core.create_namespace({"metadata": {"name": self.name}})
        expression = (
            f"device.driver == '{DRIVER_NAME}' && "
            f"device.attributes['{PREFIX}'].benchGroup == '{self.name}'"
        )
        await self.objects.create_cluster_custom_object(
            GROUP, VERSION, "deviceclasses", device_class(self.name, expression)
        )
        for s in slices_for(self.name, self.n, self.nodes):
            await self.objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", s)
        await asyncio.sleep(1)  # let the watches (operator, scheduler) deliver class and slices
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.core.delete_namespace(self.name)
        await self.objects.delete_collection_cluster_custom_object(
            GROUP, VERSION, "resourceslices", label_selector=f"bench={self.name}"
        )
        await self.objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", self.name)


def summary(
    n: int, start: float, created: dict[str, float], allocated: dict[str, float]
) -> dict[str, float]:
    """Rate, p50/p99 from create returned to allocation seen, and p99 after the burst."""
    end = max(allocated.values())
    burst_over = max(created.values())
    latencies = [allocated[k] - created[k] for k in created]
    after_burst = [allocated[k] - max(created[k], burst_over) for k in created]
    return {
        "per_s": n / (end - start),
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "p99_after_burst_s": max(0.0, percentile(after_burst, 0.99)),
        "wall_s": end - start,
    }


async def measure_operator(
    api: client.ApiClient, n: int, concurrency: int, nodes: list[str]
) -> dict[str, float]:
    """The operator allocating N claims against N VFs."""
    async with Phase(api, "op", n, nodes) as phase:
        objects, ns = phase.objects, phase.name
        seen = AllocationWatch(objects, ns, n, key=lambda body: body["metadata"]["name"])
        await asyncio.sleep(0.5)
        created: dict[str, float] = {}

        async def create(i: int) -> None:
            name = f"c-{i:05d}"
            await objects.create_namespaced_custom_object(
                GROUP, VERSION, ns, "resourceclaims", claim_body(name, ns)
            )
            created[name] = time.perf_counter()

        start = time.perf_counter()
        await gather_limited(concurrency, [create(i) for i in range(n)])
        await seen.wait()
        result = summary(n, start, created, seen.allocated)
        await cleanup_claims(api, ns, concurrency)
    return result


def pod_of(claim: dict[str, Any]) -> str:
    owners = claim["metadata"].get("ownerReferences") or []
    return next((str(o["name"]) for o in owners if o.get("kind") == "Pod"), "")


async def measure_scheduler(
    api: client.ApiClient, n: int, concurrency: int, nodes: list[str]
) -> dict[str, float]:
    """kube-scheduler allocating N pods' template claims against N VFs (operator stopped)."""
    async with Phase(api, "sched", n, nodes) as phase:
        objects, core, ns = phase.objects, phase.core, phase.name
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, ns, "resourceclaimtemplates",
            {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
             "metadata": {"name": "vf"}, "spec": {"spec": claim_spec(ns)}},
        )  # fmt: skip
        seen = AllocationWatch(objects, ns, n, key=pod_of)
        await asyncio.sleep(0.5)
        created: dict[str, float] = {}

        async def create(i: int) -> None:
            name = f"p-{i:05d}"
            await core.create_namespaced_pod(ns, pod_body(name, "vf"))
            created[name] = time.perf_counter()

        start = time.perf_counter()
        await gather_limited(concurrency, [create(i) for i in range(n)])
        await seen.wait()
        result = summary(n, start, created, seen.allocated)
        # kwok runs no kubelet: nobody would confirm a graceful deletion.
        await core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        deadline = time.monotonic() + 300
        while (await objects.list_namespaced_custom_object(GROUP, VERSION, ns, "resourceclaims"))[
            "items"
        ]:
            if time.monotonic() > deadline:
                raise SystemExit(f"template claims in {ns} were not deleted within 300 s")
            await asyncio.sleep(0.5)
    return result


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


async def measure_floor(
    api: client.ApiClient, n: int, concurrency: int, node: str
) -> dict[str, float]:
    """The two-write floor: per claim a metadata PATCH then a status PATCH (the allocation),
    on claims of a class the operator ignores."""
    # Any: the client's stubs know neither dict bodies nor _content_type.
    objects: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    name = f"floor-{n}-{secrets.token_hex(3)}"
    await core.create_namespace({"metadata": {"name": name}})
    await objects.create_cluster_custom_object(
        GROUP, VERSION, "deviceclasses", device_class(name, "device.driver == 'floor.example'")
    )
    created = time.perf_counter()
    await gather_limited(
        concurrency,
        [
            objects.create_namespaced_custom_object(
                GROUP, VERSION, name, "resourceclaims", claim_body(f"c-{i:05d}", name)
            )
            for i in range(n)
        ],
    )
    create_s = time.perf_counter() - created

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
                    "nodeSelector": node_selector(node),
                }
            }
        }

    round_trips: list[float] = []

    async def two_writes(i: int) -> None:
        claim = f"c-{i:05d}"
        sent = time.perf_counter()
        await objects.patch_namespaced_custom_object(
            GROUP, VERSION, name, "resourceclaims", claim,
            {"metadata": {"labels": {"bench-floor": "marked"}, "annotations": {"bench": str(i)}}},
            _content_type=MERGE,
        )  # fmt: skip
        round_trips.append(time.perf_counter() - sent)
        await objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, name, "resourceclaims", claim, status(i), _content_type=MERGE
        )

    start = time.perf_counter()
    await gather_limited(concurrency, [two_writes(i) for i in range(n)])
    writes_s = time.perf_counter() - start
    await core.delete_namespace(name)
    await objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", name)
    return {
        "per_s": n / writes_s,
        "patch_p50_s": percentile(round_trips, 0.5),
        # The operator's window also holds the claims' creates: the same three calls per
        # claim, one phase after the other, as an upper bound for what it can reach.
        "with_create_per_s": n / (create_s + writes_s),
    }


async def kwok_nodes(api: client.ApiClient, most: int) -> list[str]:
    """The kwok nodes, checked to hold ``most`` pods."""
    core: Any = client.CoreV1Api(api)
    nodes = sorted(
        n.metadata.name
        for n in (await core.list_node()).items
        if (n.metadata.annotations or {}).get(KWOK_ANNOTATION)
    )
    if len(nodes) * PODS_PER_KWOK_NODE < most:
        need = -(-most // PODS_PER_KWOK_NODE)
        raise SystemExit(
            f"{len(nodes)} kwok nodes hold {len(nodes) * PODS_PER_KWOK_NODE} pods, "
            f"the scheduler phase needs {most}; fix: sriov-dra devcluster up --nodes 0 "
            f"--kwok-nodes {need} (with its own --state-dir)"
        )
    return nodes


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
            "(.venv/bin/sriov-dra devcluster up --nodes 0 --kwok-nodes 10) or pass --kubeconfig"
        )
    await config.load_kube_config(config_file=args.kubeconfig)
    rows: dict[int, dict[str, dict[str, float]]] = {n: {} for n in counts}
    async with client.ApiClient() as api:
        nodes = await kwok_nodes(api, max(counts))
        for n in counts:
            rows[n]["scheduler"] = await measure_scheduler(api, n, args.concurrency, nodes)
        operator = Operator(args.kubeconfig, args.profile)
        try:
            await operator.ready()
            for n in counts:
                rows[n]["floor"] = await measure_floor(api, n, args.concurrency, nodes[0])
                rows[n]["operator"] = await measure_operator(api, n, args.concurrency, nodes)
        finally:
            operator.stop()
    report(rows, args.concurrency, len(nodes), operator.log)


def report(rows: dict[int, dict[str, dict[str, float]]], concurrency: int, nodes: int,
           log: Path) -> None:  # fmt: skip
    print(f"\noperator log: {log}")
    print(
        f"client concurrency {concurrency}; {nodes} kwok nodes; floor = one metadata PATCH + "
        "one status PATCH per claim, same client; patch = p50 round trip of one PATCH there; "
        "+create-r = operator against create + those two writes per claim\n"
    )
    header = (
        f"{'claims':>7} {'floor/s':>8} {'patch ms':>8} {'sched/s':>8} {'sched p99':>9} "
        f"{'op/s':>7} {'op p50':>7} {'op p99':>7} {'p99 post':>8} "
        f"{'floor-r':>7} {'sched-r':>7} {'post/patch':>10} {'+create-r':>9}"
    )
    print(header)
    print("-" * len(header))
    for n, row in rows.items():
        floor, sched, op = row["floor"], row["scheduler"], row["operator"]
        print(
            f"{n:>7} {floor['per_s']:>8.1f} {floor['patch_p50_s'] * 1000:>8.1f} "
            f"{sched['per_s']:>8.1f} {sched['p99_s'] * 1000:>9.0f} "
            f"{op['per_s']:>7.1f} {op['p50_s'] * 1000:>7.0f} {op['p99_s'] * 1000:>7.0f} "
            f"{op['p99_after_burst_s'] * 1000:>8.0f} "
            f"{op['per_s'] / floor['per_s']:>7.2f} {op['per_s'] / sched['per_s']:>7.2f} "
            f"{op['p99_after_burst_s'] / floor['patch_p50_s']:>10.2f} "
            f"{op['per_s'] / floor['with_create_per_s']:>9.2f}"
        )
    print(json.dumps({n: row for n, row in rows.items()}))
    n = max(rows)
    floor, sched, op = rows[n]["floor"], rows[n]["scheduler"], rows[n]["operator"]
    print(
        f"operator-claims N={n}: {op['per_s']:.1f} claims/s; "
        f"floor-ratio {op['per_s'] / floor['per_s']:.2f}; "
        f"scheduler-ratio {op['per_s'] / sched['per_s']:.2f}; p99 {op['p99_s'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
