"""The operator's HTTP port: ``/metrics``, the inventory page ``/`` and ``/inventory.json``.

Served by aiohttp on the operator's event loop, so a request reads the cache
between two watch events and never sees it half-updated: the whole inventory is
built and rendered in one step, without an await, from what the watches put in
the cache (no API call per request). Only GET (and HEAD) are routed: nothing
here can change the cluster. A bad query gets 400 (an unknown node 404) with the
parameter and the fix; an unexpected failure is logged and answered with a short
500 message, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sriov_dra.inventory import (
    InventoryPage,
    InventoryQueryError,
    NodeNotFound,
    parse_query,
    select,
)

from .cache import ClusterCache
from .inventory_page import render_error, render_inventory
from .inventory_source import Reconciler, cached_inventory
from .metrics import OperatorMetrics

log = logging.getLogger(__name__)

PAGE_SOURCE = (
    "From the operator's cache, kept by its watches of the API server (no API call per "
    "request). The command sriov-dra inventory shows the same from the API server, also while the "
    "operator is down."
)


class CacheOwner(Protocol):
    """What the server reads: the controller's cache and reconciler, once listed."""

    @property
    def cache(self) -> ClusterCache:
        """The cache the watches keep."""

    @property
    def reconciler(self) -> Reconciler:
        """The claim reconciler (pools, settings, the Events it posted)."""

    @property
    def primed(self) -> bool:
        """The whole state has been listed."""


class NotReady(Exception):
    """The operator has not listed the cluster yet."""


class OperatorHttp:
    """The routes above on ``address:port``."""

    def __init__(self, metrics: OperatorMetrics, *, address: str, port: int) -> None:
        self.owner: CacheOwner | None = None
        """The controller whose cache the inventory shows; None while there is none (a
        standby replica, or before the operator started watching)."""
        self.metrics = metrics
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application (tests serve it on their own)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._page)
        app.router.add_get("/inventory.json", self._json)
        return app

    async def start(self) -> None:
        """Listen; returns once the port is bound."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.address, self.port).start()
        self._runner = runner

    async def stop(self) -> None:
        """Close the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def view(self, request: web.Request, *, default_page: int | None) -> InventoryPage:
        """The inventory selected by the request's query, from the cache."""
        owner = self.owner
        if owner is None or not owner.primed:
            raise NotReady
        node, page, per_page = parse_query(request.query.items())
        if page is None and not node:
            page = default_page
        inventory = cached_inventory(owner.cache, owner.reconciler)
        return select(inventory, node=node, page=page, per_page=per_page)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _page(self, request: web.Request) -> web.Response:
        try:
            view = self.view(request, default_page=1)
        except Exception as exc:
            status, title, message = _failure(exc)
            return web.Response(
                text=render_error(status, title, message), status=status, content_type="text/html"
            )
        return web.Response(
            text=render_inventory(view, source=PAGE_SOURCE), content_type="text/html"
        )

    async def _json(self, request: web.Request) -> web.Response:
        try:
            view = self.view(request, default_page=None)
        except Exception as exc:
            status, title, message = _failure(exc)
            return web.json_response({"error": title, "message": message}, status=status)
        return web.json_response(text=view.model_dump_json())


def _failure(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, title, message) for a request that failed with ``exc``."""
    if isinstance(exc, NodeNotFound):
        return 404, "Not Found", exc.describe()
    if isinstance(exc, InventoryQueryError):
        return 400, "Bad Request", exc.describe()
    if isinstance(exc, NotReady):
        return (
            503,
            "Service Unavailable",
            "this operator has not listed the cluster yet (starting, or a standby replica "
            "waiting for the leader Lease); try again in a few seconds, or reach the leader",
        )
    log.exception("inventory request failed")
    return (
        500,
        "Internal Server Error",
        f"the inventory could not be built ({type(exc).__name__}); the operator's log has the "
        "details, and `sriov-dra inventory` reads the same from the API server",
    )
