"""Claim watch events one node agent receives while claims churn over many nodes.

The operator runs as a process (``sriov-dra operator``, as bench_operator_claims
starts it), so the node labels on the claims are the ones it really writes. With
``--kind static`` (the default) N static claims are created at once over VFs
published on the kwok nodes (pools named after their nodes), the operator allocates
them, then each is released (the agent's Released condition, played here) and
deleted, and the operator lets it go. With ``--kind template`` N pods each get a
claim from a ResourceClaimTemplate, kube-scheduler allocates it, the operator only
labels it, and deleting the pods deletes the claims.
Meanwhile two watches count the events they receive, in the same run:

- before: one watch over every claim of the cluster, as each agent had (it also
  had the label watch on top, so it received at least this);
- after: the agent's watch now, filtered by the API server with the node label
  of one node (:class:`~sriov_dra_agent.cluster.claim_watcher.ClaimWatcher`),
  and the same for every other node, to show nothing is lost overall.

Both are the project's :class:`~sriov_dra_kube.list_watch.ListWatch` over
``KubeApi.watch_claims``. Counting ends for each watch at the first of the sentinel
claims created after the churn, one labelled for each node (a watch delivers events
in resourceVersion order, so all earlier events have arrived by then).

    sriov-dra devcluster up --nodes 0 --kwok-nodes 10 --state-dir /var/tmp/sriov-dra/bench-watch
    KUBECONFIG=/var/tmp/sriov-dra/bench-watch/kubeconfig .venv/bin/python bench/bench_agent_watch.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_operator_claims import Operator, kwok_nodes, measure_operator, measure_scheduler
from kubernetes_asyncio import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from sriov_dra.constants import NODE_LABEL  # noqa: E402
from sriov_dra_kube.client import KubeApi  # noqa: E402
from sriov_dra_kube.list_watch import ListWatch  # noqa: E402

SENTINEL = "bench-agent-watch-sentinel"
"""Name prefix of the claims that end the counting, one per node."""


class CountingWatch:
    """A claims ListWatch (optionally label-filtered) counting the events it receives."""

    def __init__(self, api: KubeApi, label_selector: str) -> None:
        self.api = api
        self.label_selector = label_selector
        self.events: Counter[str] = Counter()
        self.listed = 0
        """Claims returned by (re)lists, beside the events."""
        self.claims: set[str] = set()
        """Uids of the claims it heard of."""
        self.sentinel_seen = asyncio.Event()
        self.counting = False
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _relist(self) -> str:
        items, version = await self.api.list_claims(label_selector=self.label_selector)
        if self.counting:
            self.listed += len(items)
        for item in items:
            self._note(item)
        return version

    def _note(self, claim: dict[str, Any]) -> None:
        meta = claim.get("metadata") or {}
        if str(meta.get("name") or "").startswith(SENTINEL):
            self.sentinel_seen.set()
            self.counting = False

    def _on_event(self, kind: str, claim: dict[str, Any]) -> None:
        if self.counting and not str(claim["metadata"].get("name") or "").startswith(SENTINEL):
            self.events[kind] += 1
            self.claims.add(str(claim["metadata"]["uid"]))
        self._note(claim)

    async def start(self) -> None:
        """Run the watch; returns once its first list is done, then counting starts."""
        listed = asyncio.Event()

        async def relist() -> str:
            version = await self._relist()
            listed.set()
            return version

        watch = ListWatch(
            what="claim",
            relist=relist,
            watch=lambda version, timeout: self.api.watch_claims(
                version, label_selector=self.label_selector, timeout_seconds=timeout
            ),
            on_event=self._on_event,
            timeout_seconds=60,
        )
        self.task = asyncio.create_task(watch.run(self.stop))
        await asyncio.wait_for(listed.wait(), timeout=60)
        self.counting = True

    async def finish(self) -> None:
        await asyncio.wait_for(self.sentinel_seen.wait(), timeout=120)
        self.stop.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    @property
    def total(self) -> int:
        return sum(self.events.values())


async def sentinels(api: client.ApiClient, nodes: list[str], *, create: bool) -> None:
    """One claim carrying each node's label in ``default`` (or their removal)."""
    objects: Any = client.CustomObjectsApi(api)
    for i, node in enumerate(nodes):
        name = f"{SENTINEL}-{i}"
        if not create:
            await objects.delete_namespaced_custom_object(
                "resource.k8s.io", "v1", "default", "resourceclaims", name
            )
            continue
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "labels": {NODE_LABEL: node}},
            "spec": {
                "devices": {
                    "requests": [
                        {"name": "x", "exactly": {"deviceClassName": "bench-no-such-class"}}
                    ]
                }
            },
        }
        await objects.create_namespaced_custom_object(
            "resource.k8s.io", "v1", "default", "resourceclaims", body
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--kind",
        choices=("static", "template"),
        default="static",
        help="static claims the operator allocates, or pods' template claims the scheduler does",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", "/var/tmp/sriov-dra/devcluster/kubeconfig"),
    )
    args = parser.parse_args()
    if not await asyncio.to_thread(os.path.isfile, args.kubeconfig):
        raise SystemExit(
            f"no kubeconfig at {args.kubeconfig}; fix: start the dev cluster first "
            f"(.venv/bin/sriov-dra devcluster up --nodes 0 --kwok-nodes {args.nodes} "
            "--state-dir /var/tmp/sriov-dra/bench-watch) or pass --kubeconfig"
        )
    await config.load_kube_config(config_file=args.kubeconfig)
    watch_api = await KubeApi.from_kubeconfig(args.kubeconfig)
    async with client.ApiClient() as api:
        most = args.claims if args.kind == "template" else 0
        nodes = (await kwok_nodes(api, most))[: args.nodes]
        if len(nodes) < args.nodes:
            raise SystemExit(
                f"{len(nodes)} kwok nodes, {args.nodes} wanted; fix: sriov-dra devcluster up "
                f"--nodes 0 --kwok-nodes {args.nodes} (with its own --state-dir)"
            )
        before = CountingWatch(watch_api, "")
        after = {node: CountingWatch(watch_api, f"{NODE_LABEL}={node}") for node in nodes}
        for watch in (before, *after.values()):
            await watch.start()
        operator = Operator(args.kubeconfig)
        try:
            await operator.ready()
            started = time.perf_counter()
            measure = measure_scheduler if args.kind == "template" else measure_operator
            churn = await measure(api, args.claims, args.concurrency, nodes)
            await sentinels(api, nodes, create=True)
            for watch in (before, *after.values()):
                await watch.finish()
            elapsed = time.perf_counter() - started
        finally:
            operator.stop()
            await sentinels(api, nodes, create=False)
            await watch_api.close()
    report(args, nodes, before, after, churn, elapsed, operator.log)


def report(
    args: argparse.Namespace,
    nodes: list[str],
    before: CountingWatch,
    after: dict[str, CountingWatch],
    churn: dict[str, float],
    elapsed: float,
    log: Path,
) -> None:
    one = after[nodes[0]]
    per_node = [after[n].total for n in nodes]
    print(f"\noperator log: {log}")
    how = (
        "pods' template claims allocated by kube-scheduler, labelled by the operator, deleted "
        "with their pods"
        if args.kind == "template"
        else "static claims allocated by the operator, released and deleted"
    )
    print(
        f"{args.claims} {how}, over {len(nodes)} kwok nodes in {elapsed:.1f} s (allocation "
        f"{churn['per_s']:.1f} claims/s); events counted from the end of each watch's first "
        "list to a sentinel claim\n"
    )
    header = (
        f"{'watch of one agent':<34} {'events':>7} {'ADDED':>6} {'MODIFIED':>8} "
        f"{'DELETED':>7} {'claims':>6} {'per claim':>9} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, watch in (
        ("before: every claim (unfiltered)", before),
        (f"after: label {nodes[0]}", one),
    ):
        print(
            f"{name:<34} {watch.total:>7} {watch.events['ADDED']:>6} "
            f"{watch.events['MODIFIED']:>8} {watch.events['DELETED']:>7} "
            f"{len(watch.claims):>6} {watch.total / max(1, len(watch.claims)):>9.2f} "
            f"{watch.total / max(1, one.total):>6.1f}"
        )
    print(
        f"\nafter, per node (label watch of each of the {len(nodes)} nodes): "
        f"min {min(per_node)}, max {max(per_node)}, sum {sum(per_node)}; "
        f"claims seen by some node: {len(set().union(*(after[n].claims for n in nodes)))} "
        f"of {len(before.claims)}"
    )
    print(
        f"all {len(nodes)} agents together: before {before.total * len(nodes)} events, "
        f"after {sum(per_node)} ({before.total * len(nodes) / max(1, sum(per_node)):.1f}x fewer)"
    )
    print(
        json.dumps(
            {
                "claims": args.claims,
                "kind": args.kind,
                "nodes": len(nodes),
                "before": dict(before.events),
                "after": dict(one.events),
                "after_per_node": dict(zip(nodes, per_node, strict=True)),
                "ratio": before.total / max(1, one.total),
            }
        )
    )
    print(
        f"agent-watch {args.kind} N={args.claims} nodes={len(nodes)}: "
        f"before {before.total} events, after {one.total}; "
        f"ratio {before.total / max(1, one.total):.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
