"""The kubelet-facing DRA plugin: registration socket and DRA service (v1 and v1beta1).

Two grpc.aio servers on unix sockets, laid out as the kubelet's plugin watcher
expects (``k8s.io/dynamic-resource-allocation/kubeletplugin``):

- ``<registrar-dir>/<driver>-reg.sock`` serves ``pluginregistration.Registration``:
  GetInfo answers type ``DRAPlugin``, the driver name, the DRA socket path and
  the service versions; NotifyRegistrationStatus is logged and recorded.
- ``<plugins-dir>/<driver>/dra.sock`` serves ``k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin``
  and ``...v1beta1.DRAPlugin`` (identical messages, different package), plus any
  extra services given (the device health stream, ``v1alpha1.DRAResourceHealth``,
  which kubelet 1.34 calls on this same socket).

This module is transport only: each claim of a request goes to a
:class:`ClaimPreparer` (the agent), under a per-claim lock, and its outcome,
success or error, becomes that claim's entry in the response map. A call never
fails as a whole because of one claim, and every claim in the request gets an
entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Protocol, TypeVar

import grpc
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import SriovDraError

from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.kubelet.protos import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)
from sriov_dra_agent.kubelet.socket_files import prepare_socket_path, remove_socket

logger = logging.getLogger(__name__)


DEFAULT_REGISTRAR_DIR: Final = Path("/var/lib/kubelet/plugins_registry")
DEFAULT_PLUGINS_DIR: Final = Path("/var/lib/kubelet/plugins")
PLUGIN_TYPE: Final = "DRAPlugin"
SUPPORTED_VERSIONS: Final = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
"""In preference order; the kubelet takes the first one it supports."""

T = TypeVar("T")


@dataclass(frozen=True)
class PreparedDevice:
    """One device of a prepared claim, as the kubelet needs it for CRI."""

    request_names: tuple[str, ...]
    """Requests this device serves; empty = all requests of the claim."""
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...]


class ClaimPreparer(Protocol):
    """Implemented by the agent: the claim business behind the DRA service.

    Both methods must be idempotent (the kubelet retries, and calls again after
    restarts), and must check what the kubelet cannot (claim UID, allocation
    for this node, device not prepared for another claim). Raise SriovDraError
    (or any exception) to report the claim as failed; its text becomes the
    claim's ``error`` entry. Calls for one claim never overlap; calls for
    different claims may run concurrently.
    """

    async def prepare(self, claim: ClaimRef) -> list[PreparedDevice]: ...

    async def unprepare(self, claim: ClaimRef) -> None: ...


@dataclass(frozen=True)
class RegistrationStatus:
    """What the kubelet last told us through NotifyRegistrationStatus."""

    registered: bool
    error: str


@dataclass(frozen=True)
class KubeletPluginConfig:
    """Where the sockets live; defaults are what the kubelet watches."""

    driver_name: str = DRIVER_NAME
    registrar_dir: Path = DEFAULT_REGISTRAR_DIR
    plugins_dir: Path = DEFAULT_PLUGINS_DIR

    @property
    def plugin_dir(self) -> Path:
        """``<plugins-dir>/<driver>``: the DRA socket, and a natural home for our state."""
        return self.plugins_dir / self.driver_name

    @property
    def registration_socket(self) -> Path:
        return self.registrar_dir / f"{self.driver_name}-reg.sock"

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / "dra.sock"


def claim_error(claim: ClaimRef, action: str, exc: BaseException) -> str:
    """The ``error`` string the kubelet shows in the pod's events."""
    if isinstance(exc, SriovDraError):
        return f"{action} claim {claim}: {exc.describe()}"
    return f"{action} claim {claim}: internal error: {type(exc).__name__}: {exc}"


def _unique_claims(claims: Iterable[Any]) -> list[ClaimRef]:
    """The request's claims, each UID once (the response map has one entry per UID)."""
    unique: dict[str, ClaimRef] = {}
    for c in claims:
        unique.setdefault(c.uid, ClaimRef(c.namespace, c.name, c.uid))
    return list(unique.values())


def _missing_fields(claim: ClaimRef) -> list[str]:
    return [name for name in ("namespace", "name", "uid") if not getattr(claim, name)]


class _ClaimRunner:
    """Runs per-claim work under the claim's lock, to completion.

    The work is shielded from the RPC's cancellation (kubelet deadline, client
    gone): stopping a VF programming or a CDI write half-way would leave state
    the retry cannot recognise, while finishing it lets the retry see "already
    prepared".
    """

    def __init__(self, locks: ClaimLocks) -> None:
        self.locks = locks
        self._inflight: set[asyncio.Task[Any]] = set()

    async def run(self, uid: str, work: Callable[[], Awaitable[T]]) -> T:
        async def locked() -> T:
            async with self.locks.hold(uid):
                return await work()

        task = asyncio.create_task(locked())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def drain(self, grace: float | None) -> None:
        """Wait up to ``grace`` seconds (None: not at all) for running claim work."""
        if self._inflight and grace:
            _, pending = await asyncio.wait(self._inflight, timeout=grace)
            if pending:
                logger.warning(
                    "stopping with claim work still running", extra={"tasks": len(pending)}
                )


class _DraService:
    """DRAPlugin servicer for one API version (``pb2`` is that version's message module)."""

    def __init__(
        self, pb2: ModuleType, version: str, preparer: ClaimPreparer, runner: _ClaimRunner
    ) -> None:
        self._pb2 = pb2
        self._version = version
        self._preparer = preparer
        self._runner = runner

    async def NodePrepareResources(self, request: Any, context: Any) -> Any:
        claims = _unique_claims(request.claims)
        outcomes = await asyncio.gather(*(self._prepare(c) for c in claims))
        response = self._pb2.NodePrepareResourcesResponse()
        for claim, (devices, error) in zip(claims, outcomes, strict=True):
            entry = response.claims[claim.uid]
            if error:
                entry.error = error
                continue
            for device in devices:
                entry.devices.add(
                    request_names=list(device.request_names),
                    pool_name=device.pool_name,
                    device_name=device.device_name,
                    cdi_device_ids=list(device.cdi_device_ids),
                )
        return response

    async def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        claims = _unique_claims(request.claims)
        errors = await asyncio.gather(*(self._unprepare(c) for c in claims))
        response = self._pb2.NodeUnprepareResourcesResponse()
        for claim, error in zip(claims, errors, strict=True):
            response.claims[claim.uid].error = error
        return response

    async def _prepare(self, claim: ClaimRef) -> tuple[Sequence[PreparedDevice], str]:
        context = self._log_context(claim)
        missing = _missing_fields(claim)
        if missing:
            return [], f"prepare claim {claim}: the request lacks {', '.join(missing)}"
        try:
            devices = await self._runner.run(claim.uid, lambda: self._preparer.prepare(claim))
        except Exception as exc:
            self._log_failure("prepare", claim, exc, context)
            return [], claim_error(claim, "prepare", exc)
        logger.info(
            "prepared claim",
            extra={**context, "devices": [d.device_name for d in devices]},
        )
        return devices, ""

    async def _unprepare(self, claim: ClaimRef) -> str:
        context = self._log_context(claim)
        missing = _missing_fields(claim)
        if missing:
            return f"unprepare claim {claim}: the request lacks {', '.join(missing)}"
        try:
            await self._runner.run(claim.uid, lambda: self._preparer.unprepare(claim))
        except Exception as exc:
            self._log_failure("unprepare", claim, exc, context)
            return claim_error(claim, "unprepare", exc)
        logger.info("unprepared claim", extra=context)
        return ""

    def _log_context(self, claim: ClaimRef) -> dict[str, str]:
        return {
            "claim": claim.ref(),
            "uid": claim.uid,
            "api": self._version,
        }

    @staticmethod
    def _log_failure(action: str, claim: ClaimRef, exc: Exception, context: dict[str, str]) -> None:
        if isinstance(exc, SriovDraError):
            logger.warning("%s failed: %s", action, exc.describe(), extra=context)
        else:
            logger.exception("%s failed unexpectedly", action, extra=context)


class _RegistrationService:
    """pluginregistration.Registration servicer."""

    def __init__(self, plugin: KubeletPlugin) -> None:
        self._plugin = plugin

    async def GetInfo(self, request: Any, context: Any) -> Any:
        config = self._plugin.config
        return pluginregistration_v1_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=config.driver_name,
            endpoint=str(config.dra_socket),
            supported_versions=list(SUPPORTED_VERSIONS),
        )

    async def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:
        self._plugin.record_registration(
            RegistrationStatus(registered=request.plugin_registered, error=request.error)
        )
        return pluginregistration_v1_pb2.RegistrationStatusResponse()


@dataclass
class _Servers:
    dra: grpc.aio.Server | None = None
    registration: grpc.aio.Server | None = None


class KubeletPlugin:
    """Both servers; ``start()`` them from the agent's main and ``stop()`` on shutdown."""

    def __init__(
        self,
        preparer: ClaimPreparer,
        config: KubeletPluginConfig | None = None,
        *,
        locks: ClaimLocks | None = None,
        on_registration: Callable[[RegistrationStatus], None] | None = None,
        extra_services: Sequence[tuple[Any, Callable[[Any, grpc.aio.Server], None]]] = (),
    ) -> None:
        self.config = config or KubeletPluginConfig()
        self.locks = locks or ClaimLocks()
        self.registration_status: RegistrationStatus | None = None
        self._registered = asyncio.Event()
        self._on_registration = on_registration
        self._runner = _ClaimRunner(self.locks)
        self._services = [
            (
                _DraService(dra_v1_pb2, "v1", preparer, self._runner),
                dra_v1_pb2_grpc.add_DRAPluginServicer_to_server,
            ),
            (
                _DraService(dra_v1beta1_pb2, "v1beta1", preparer, self._runner),
                dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server,
            ),
            *extra_services,
        ]
        self._servers = _Servers()

    async def start(self) -> None:
        """Serve the DRA socket, then announce it on the registration socket.

        The DRA endpoint is up before the kubelet can learn about it; stale
        socket files from a previous run are replaced.
        """

        def add_dra(server: grpc.aio.Server) -> None:
            for service, add in self._services:
                add(service, server)

        def add_registration(server: grpc.aio.Server) -> None:
            pluginregistration_v1_pb2_grpc.add_RegistrationServicer_to_server(
                _RegistrationService(self), server
            )

        self._servers.dra = await self._serve(self.config.dra_socket, add_dra)
        try:
            self._servers.registration = await self._serve(
                self.config.registration_socket, add_registration
            )
        except BaseException:
            await self._stop_server(self._servers.dra, self.config.dra_socket, grace=None)
            self._servers.dra = None
            raise
        logger.info(
            "kubelet plugin serving",
            extra={
                "registration_socket": str(self.config.registration_socket),
                "dra_socket": str(self.config.dra_socket),
                "versions": list(SUPPORTED_VERSIONS),
            },
        )

    async def stop(self, grace: float | None = 5.0) -> None:
        """Deregister (remove the registration socket), let running claims finish, stop serving.

        ``grace`` bounds the wait for running claims and for open calls; None stops at once.
        """
        await self._stop_server(
            self._servers.registration, self.config.registration_socket, grace=grace
        )
        self._servers.registration = None
        await self._runner.drain(grace)
        await self._stop_server(self._servers.dra, self.config.dra_socket, grace=grace)
        self._servers.dra = None

    async def wait_registered(self) -> RegistrationStatus:
        """Wait until the kubelet reports a successful registration."""
        await self._registered.wait()
        assert self.registration_status is not None
        return self.registration_status

    def record_registration(self, status: RegistrationStatus) -> None:
        """Remember and log what the kubelet said about our registration."""
        self.registration_status = status
        extra = {"driver": self.config.driver_name, "error": status.error}
        if status.registered:
            self._registered.set()
            logger.info("registered with the kubelet", extra=extra)
        else:
            self._registered.clear()
            logger.error("the kubelet refused the registration", extra=extra)
        if self._on_registration is not None:
            self._on_registration(status)

    @staticmethod
    async def _serve(path: Path, add: Callable[[grpc.aio.Server], None]) -> grpc.aio.Server:
        prepare_socket_path(path)
        server = grpc.aio.server()
        add(server)
        server.add_insecure_port(f"unix://{path}")
        await server.start()
        return server

    @staticmethod
    async def _stop_server(
        server: grpc.aio.Server | None, path: Path, *, grace: float | None
    ) -> None:
        # Remove the file first: the kubelet's watcher sees the deletion and
        # deregisters before the server stops answering.
        remove_socket(path)
        if server is not None:
            await server.stop(grace)
