"""Pod-start overhead of a VF on a real node: the static claim's pod against a plain one.

The pod with the static claim is compared with the same pod without it, on the same node.

Starts a dev cluster with one real node (kubelet + containerd + runc, a simulated
SR-IOV NIC), installs the driver as users do (the demo's step 0: ``crds/``, then
``manifests/simulated`` with the image built here), applies the seed example's
Namespace, NAD and static ResourceClaim, and waits for the operator to allocate it.
Then, over N rounds (default 50), alternating which goes first, it starts:

- the seed's pod (the toolbox image, ``sleep INF``) with the static claim: the
  kubelet's NodePrepareResources, the CDI createRuntime hook attaching the VF
  (move, IPAM, addresses), the container;
- the same pod without the claim (the baseline, measured in the same run).

Each start is timed from the create call to the container's first instruction
(it prints the time: containers share this machine's clock) and, as the API shows
it, to the watch event with phase Running (later by up to the kubelet's 1 s relist
period; the API's own timestamps have whole seconds only). Each pod is deleted and gone,
and the claim unreserved with its VF detached, before the next pod is created;
that part is not timed. The first pod of each kind is a warm-up (image pull).

Prints p50/p99 with and without the claim and their difference (the goal: at most
100 ms at p99); interrupted (SIGINT), it prints the rounds done. One real-node
cluster per machine: run it under the lock,

    flock /tmp/sriov-dra-realnodes.lock .venv/bin/python bench/bench_pod_start.py --pods 50

``--state-dir`` reuses a dev cluster there (started if none runs) and ``--keep``
leaves it running, so that a small run and a large one can share one start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config, watch
from latency_table import percentile

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(ROOT / "operator"),
    str(ROOT / "node_agent"),
    str(ROOT / "tests" / "devcluster"),
]

from sriov_dra_devcluster.cluster import DevCluster  # noqa: E402
from sriov_dra_devcluster.demo_scenario import CLAIM, EXAMPLE, NAMESPACE, on_node  # noqa: E402
from sriov_dra_devcluster.deployment import DriverDeployment  # noqa: E402
from sriov_dra_devcluster.walkthrough import Walkthrough  # noqa: E402

STATE_ROOT = Path("/var/tmp/sriov-dra")
TIMEOUT = 180


def _pod(name: str, node: str, *, with_claim: bool) -> dict[str, Any]:
    """The seed's pod0 (its image; its command after printing the time it starts),
    pinned to ``node``, quick to stop, its image pulled once (not per pod)."""
    container: dict[str, Any] = {
        "name": "ctr0",
        "image": "quay.io/schseba/toolbox:latest",
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/bash", "-c", "date +%s.%N; exec sleep INF"],
    }
    spec: dict[str, Any] = {
        "affinity": on_node(node),
        "terminationGracePeriodSeconds": 1,
        "containers": [container],
    }
    if with_claim:
        container["resources"] = {"claims": [{"name": "vf"}]}
        spec["resourceClaims"] = [{"name": "vf", "resourceClaimName": CLAIM}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


async def _start(core: client.CoreV1Api, body: Any) -> tuple[float, float]:
    """Milliseconds from the create call to the container's first instruction (the time
    it prints: containers share this machine's clock) and to the watch event showing
    the pod Running (later by up to the kubelet's 1 s relist period)."""
    name = body["metadata"]["name"]
    wall, start = time.time(), time.perf_counter()
    created = await core.create_namespaced_pod(NAMESPACE, body)
    async with watch.Watch().stream(
        core.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={name}",
        resource_version=created.metadata.resource_version, timeout_seconds=TIMEOUT,
    ) as stream:  # fmt: skip
        async for event in stream:
            if event["object"].status.phase == "Running":
                running = (time.perf_counter() - start) * 1000
                return (await _printed_time(core, name) - wall) * 1000, running
            if event["object"].status.phase in ("Failed", "Succeeded"):
                break
    raise RuntimeError(f"pod {NAMESPACE}/{name} did not run within {TIMEOUT}s")


async def _printed_time(core: client.CoreV1Api, name: str) -> float:
    """The time the pod's container printed first (its log may lag its start a little)."""
    deadline = time.monotonic() + 10
    while True:
        log = await core.read_namespaced_pod_log(name, NAMESPACE, container="ctr0")
        if log.strip():
            return float(log.split()[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"pod {NAMESPACE}/{name} printed no start time")
        await asyncio.sleep(0.05)


async def _settled(custom: client.CustomObjectsApi) -> bool:
    """The claim is unreserved and no VF of it is in a pod (networkData gone)."""
    claim = await custom.get_namespaced_custom_object(
        "resource.k8s.io", "v1", NAMESPACE, "resourceclaims", CLAIM
    )
    status = claim.get("status") or {}
    attached = [d for d in status.get("devices") or [] if d.get("networkData")]
    return not status.get("reservedFor") and not attached


async def _remove(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, name: str, *, with_claim: bool
) -> None:
    """Delete the pod and wait until it is gone (and, with the claim, the claim settled)."""
    await core.delete_namespaced_pod(name, NAMESPACE)
    deadline = time.monotonic() + TIMEOUT
    while True:
        pods = await core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={name}")
        if not pods.items and (not with_claim or await _settled(custom)):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pod {NAMESPACE}/{name} not gone (or claim not settled)")
        await asyncio.sleep(0.2)


async def _measure(cluster: DevCluster, pods: int, samples: dict[str, list[float]]) -> None:
    """Fill ``samples`` ("<vf|plain> <started|running>") round by round."""
    await config.load_kube_config(str(cluster.kubeconfig))
    async with client.ApiClient() as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        claim = await custom.get_namespaced_custom_object(
            "resource.k8s.io", "v1", NAMESPACE, "resourceclaims", CLAIM
        )
        node = claim["status"]["allocation"]["devices"]["results"][0]["pool"]
        for i in range(pods + 1):
            for with_claim in (True, False) if i % 2 == 0 else (False, True):
                kind = "vf" if with_claim else "plain"
                name = f"{kind}-{i}"
                started, running = await _start(core, _pod(name, node, with_claim=with_claim))
                if i > 0:  # the first of each kind pulls the image
                    samples[f"{kind} started"].append(started)
                    samples[f"{kind} running"].append(running)
                await _remove(core, custom, name, with_claim=with_claim)
                print(
                    f"{name}: started {started:.0f} ms, Running {running:.0f} ms", file=sys.stderr
                )


def _prepare_claim(cluster: DevCluster) -> None:
    """The seed example's Namespace, NAD and static claim, allocated by the operator."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] != "Pod"]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs, sort_keys=False))
    deadline = time.monotonic() + TIMEOUT
    while True:
        claim = json.loads(
            cluster.kubectl("get", "resourceclaim", CLAIM, "-n", NAMESPACE, "-o", "json").stdout
        )
        if (claim.get("status") or {}).get("allocation"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the operator did not allocate {NAMESPACE}/{CLAIM}")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=50, help="pods of each kind (default 50)")
    parser.add_argument("--state-dir", type=Path, help="reuse (or start) the dev cluster here")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (real nodes run in network namespaces)", file=sys.stderr)
        return 2
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="bench-pod-start-", dir=STATE_ROOT))
    cluster = DevCluster(state)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    samples: dict[str, list[float]] = {
        f"{kind} {when}": [] for kind in ("vf", "plain") for when in ("started", "running")
    }
    try:
        cluster.up(nodes=0, real_nodes=1, timeout=300, log=log)
        Walkthrough(cluster, DriverDeployment(cluster), echo=log).step0_install()
        _prepare_claim(cluster)
        asyncio.run(_measure(cluster, args.pods, samples))
    except KeyboardInterrupt:
        log(f"interrupted; the table has the {len(samples['plain running'])} rounds done")
    finally:
        if not args.keep:
            cluster.down(log=log)
            shutil.rmtree(state, ignore_errors=True)
    rounds = min(len(v) for v in samples.values())
    if not rounds:
        return 1
    print(f"{rounds} pods of each kind on one real node, ms from the create call")
    print(f"{'pod':<44} {'p50':>8} {'p99':>8}")
    for when, what in (("started", "container started"), ("running", "Running seen")):
        vf, plain = samples[f"vf {when}"][:rounds], samples[f"plain {when}"][:rounds]
        for label, row in ((f"{what}, with the static claim", vf), (f"{what}, without", plain)):
            print(f"{label:<44} {percentile(row, 0.5):8.0f} {percentile(row, 0.99):8.0f}")
        p50 = percentile(vf, 0.5) - percentile(plain, 0.5)
        p99 = percentile(vf, 0.99) - percentile(plain, 0.99)
        print(f"{f'{what}, difference (VF overhead)':<44} {p50:8.0f} {p99:8.0f}   goal: p99 <= 100")
    return 0


if __name__ == "__main__":
    sys.exit(main())
