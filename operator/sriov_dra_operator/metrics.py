"""Prometheus metrics of the operator, on their own registry.

A private registry keeps tests (several operators in one interpreter) and the
process collector of other libraries out of each other's way.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

NAMESPACE = "sriov_dra_operator"


class OperatorMetrics:
    """Counters, gauges and the reconcile-latency histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.allocations = Counter(
            "allocations",
            "Claims this operator allocated, by node.",
            ["node"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.failures = Counter(
            "allocation_failures",
            "Reconciles that could not allocate, by Event reason.",
            ["reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "reconcile_errors",
            "Reconciles that raised an unexpected error (then retried with backoff), by its type.",
            ["exception"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.releases = Counter(
            "releases",
            "Allocations cleared after the claim was deleted and its VFs released.",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.conflicts = Counter(
            "allocation_conflicts",
            "Devices found in two claims' allocations.",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.write_conflicts = Counter(
            "write_conflicts",
            "Writes refused with 409 Conflict (stale resourceVersion), then recomputed.",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.vfs_free = Gauge(
            "vfs_free",
            "VFs of our driver published for a node and held by no claim.",
            ["node"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.vfs_allocated = Gauge(
            "vfs_allocated",
            "VFs of our driver published for a node and held by some claim.",
            ["node"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "queue_depth",
            "Claims waiting to be reconciled.",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.leader = Gauge(
            "leader",
            "1 while this replica holds the leader-election Lease and acts, else 0.",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "reconcile_duration_seconds",
            "Time to reconcile one claim (read, decide, write).",
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._nodes: set[str] = set()

    def set_vf_counts(self, counts: Mapping[str, tuple[int, int]]) -> None:
        """Per node (free, allocated); nodes that disappeared are reset to zero."""
        for node in self._nodes - counts.keys():
            self.vfs_free.labels(node).set(0)
            self.vfs_allocated.labels(node).set(0)
        for node, (free, allocated) in counts.items():
            self.vfs_free.labels(node).set(free)
            self.vfs_allocated.labels(node).set(allocated)
        self._nodes |= counts.keys()

    def render(self) -> bytes:
        """The exposition text of ``/metrics`` (served by :mod:`.http_server`)."""
        return generate_latest(self.registry)
