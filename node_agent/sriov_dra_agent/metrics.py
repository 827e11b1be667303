"""Prometheus metrics of the agent, and the small HTTP servers for /metrics and /healthz.

Each agent owns its registry (several agents share one process in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from sriov_dra_agent.vf.inventory import Inventory
    from sriov_dra_agent.vf.records import VfRecord

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
VF_STATES: Final = ("free", "programmed", "prepared", "attached")


class AgentMetrics:
    """Counters and latencies of prepare/unprepare/attach/detach/program, VFs per state."""

    def __init__(self, node: str) -> None:
        self.registry = CollectorRegistry()
        labels = ("operation", "result")
        self.operations = Counter(
            "sriov_dra_agent_operations",
            "Claim operations by kind (prepare, unprepare, attach, detach, program, release) "
            "and result (ok, error)",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "sriov_dra_agent_operation_seconds",
            "Duration of claim operations",
            ("operation",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.vfs = Gauge(
            "sriov_dra_agent_vfs", "VFs of this node by state", ("state",), registry=self.registry
        )
        self.slice_generation = Gauge(
            "sriov_dra_agent_pool_generation",
            "Generation of the published ResourceSlice pool",
            registry=self.registry,
        )
        self.published_devices = Gauge(
            "sriov_dra_agent_published_devices",
            "Devices in the published pool",
            registry=self.registry,
        )
        self.nad_fetches = Counter(
            "sriov_dra_agent_nad_fetches",
            "NetworkAttachmentDefinition reads from the API server (lists and GETs; "
            "reconciles read the watch-backed cache)",
            registry=self.registry,
        )
        self.reconciles = Counter(
            "sriov_dra_agent_claim_reconciles",
            "Claim reconciles (watch events and resyncs)",
            registry=self.registry,
        )
        self.node_info = Gauge(
            "sriov_dra_agent_info", "Constant 1, labelled with the node", ("node",),
            registry=self.registry,
        )  # fmt: skip
        self.node_info.labels(node=node).set(1)
        for state in VF_STATES:
            self.vfs.labels(state=state).set(0)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Count ``operation`` as ok/error and observe its latency."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.operations.labels(operation=operation, result="error").inc()
            raise
        finally:
            self.latency.labels(operation=operation).observe(time.perf_counter() - start)
        self.operations.labels(operation=operation, result="ok").inc()

    def set_vf_states(self, counts: dict[str, int]) -> None:
        for state in VF_STATES:
            self.vfs.labels(state=state).set(counts.get(state, 0))

    def on_publish(self, generation: int, devices: int) -> None:
        self.slice_generation.set(generation)
        self.published_devices.set(devices)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def vf_state_counts(
    records: Sequence[VfRecord], inventory: Inventory | None, prepared: Collection[str]
) -> dict[str, int]:
    """VFs per state for the gauge: held ones by their record, and ``prepared`` claim UIDs."""
    counts = {"programmed": 0, "prepared": 0, "attached": 0}
    for record in records:
        if record.attachment is not None and record.attachment.phase == "attached":
            counts["attached"] += 1
        elif record.claim.uid in prepared:
            counts["prepared"] += 1
        else:
            counts["programmed"] += 1
    total = len(inventory.vfs()) if inventory is not None else len(records)
    counts["free"] = max(total - len(records), 0)
    return counts


class HttpEndpoints:
    """``/metrics`` on one port and ``/healthz`` on another (0 = that server is off)."""

    def __init__(
        self,
        metrics: AgentMetrics,
        healthy: Callable[[], tuple[bool, str]],
        *,
        address: str,
        metrics_port: int,
        health_port: int,
    ) -> None:
        self.metrics = metrics
        self.healthy = healthy
        self.address = address
        self.metrics_port = metrics_port
        self.health_port = health_port
        self._runners: list[web.AppRunner] = []

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _health(self, _request: web.Request) -> web.Response:
        ok, detail = self.healthy()
        return web.json_response({"ok": ok, "detail": detail}, status=200 if ok else 503)

    async def start(self) -> None:
        if self.metrics_port:
            app = web.Application()
            app.router.add_get("/metrics", self._metrics)
            await self._serve(app, self.metrics_port)
        if self.health_port:
            app = web.Application()
            app.router.add_get("/healthz", self._health)
            app.router.add_get("/livez", self._health)
            await self._serve(app, self.health_port)

    async def _serve(self, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.address, port)
        await site.start()
        self._runners.append(runner)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
