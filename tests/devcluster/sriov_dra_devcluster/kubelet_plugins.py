"""The kubelet side of DRA plugin registration and NodePrepare/NodeUnprepare (emulation).

What a kubelet's plugin watcher does, done on demand: list the registration
sockets in the node's registrar directory (names starting with ``.`` are
ignored), ask each one ``GetInfo``, accept ``DRAPlugin`` entries whose advertised
services include one the kubelet 1.34 supports (walking the plugin's list in
order, as the kubelet does: ``v1.DRAPlugin`` or ``v1beta1.DRAPlugin``), tell the
plugin ``NotifyRegistrationStatus`` once per socket, and then talk to the DRA
endpoint the plugin gave. All calls go over the plugin's real unix sockets.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
from sriov_dra.claim_ref import ClaimRef as ClaimRef  # re-exported: node_emulator imports it
from sriov_dra_agent.kubelet.plugin import PreparedDevice as PreparedDevice  # one type for both
from sriov_dra_agent.kubelet.protos import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)

log = logging.getLogger(__name__)


DRA_PLUGIN_TYPE: Final = "DRAPlugin"
V1: Final = "v1.DRAPlugin"
V1BETA1: Final = "v1beta1.DRAPlugin"
SUPPORTED_BY_KUBELET: Final = (V1, V1BETA1)
CALL_TIMEOUT: Final = 45.0
"""The kubelet's per-call timeout for DRA plugin calls (defaultClientCallTimeout)."""
INFO_TIMEOUT: Final = 5.0


class PluginNotRegistered(Exception):
    """No registered plugin for a driver; the message is the kubelet's."""

    def __init__(self, driver: str) -> None:
        super().__init__(f"DRA driver {driver} is not registered")
        self.driver = driver


def device_to_json(device: PreparedDevice) -> dict[str, Any]:
    """A prepared device in the emulated kubelet's checkpoint (the kubelet's field names)."""
    return {
        "requestNames": list(device.request_names),
        "poolName": device.pool_name,
        "deviceName": device.device_name,
        "cdiDeviceIDs": list(device.cdi_device_ids),
    }


def device_from_json(data: Mapping[str, Any]) -> PreparedDevice:
    """Inverse of :func:`device_to_json`."""
    return PreparedDevice(
        tuple(data.get("requestNames", [])),
        data["poolName"],
        data["deviceName"],
        tuple(data.get("cdiDeviceIDs", [])),
    )


@dataclass(frozen=True)
class PrepareResult:
    """One claim's answer: its devices, or the plugin's error for it."""

    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Plugin:
    """A registered DRA plugin: driver name, DRA endpoint and the service version chosen."""

    driver: str
    endpoint: str
    version: str
    registration_socket: Path


def choose_version(advertised: Sequence[str]) -> str | None:
    """The first advertised service the kubelet supports, in the plugin's order."""
    for service in advertised:
        if service in SUPPORTED_BY_KUBELET:
            return service
    return None


@dataclass
class PluginWatcher:
    """The registered plugins of one node, refreshed from its registrar directory."""

    registrar_dir: Path
    _notified: dict[tuple[str, int, int], Plugin | None] = field(default_factory=dict)

    async def refresh(self) -> dict[str, Plugin]:
        """Scan the registrar dir; return driver -> plugin (most recently created socket wins)."""
        plugins: dict[str, tuple[float, Plugin]] = {}
        seen: set[tuple[str, int, int]] = set()
        try:
            entries = sorted(self.registrar_dir.iterdir())
        except FileNotFoundError:
            return {}
        for path in entries:
            if path.name.startswith("."):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if not stat.S_ISSOCK(st.st_mode):
                continue
            key = (str(path), st.st_ino, st.st_mtime_ns)
            seen.add(key)
            plugin = await self._register(path, key)
            if plugin is None:
                continue
            current = plugins.get(plugin.driver)
            if current is None or st.st_mtime > current[0]:
                plugins[plugin.driver] = (st.st_mtime, plugin)
        # Forget sockets that went away, so a re-created socket is registered again.
        for stale in set(self._notified) - seen:
            del self._notified[stale]
        return {driver: plugin for driver, (_, plugin) in plugins.items()}

    async def _register(self, path: Path, key: tuple[str, int, int]) -> Plugin | None:
        if key in self._notified:
            known = self._notified[key]
            if known is None or await _alive(path):
                return known
            del self._notified[key]
            return None
        async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
            stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
            try:
                info = await stub.GetInfo(
                    pluginregistration_v1_pb2.InfoRequest(), timeout=INFO_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "GetInfo failed on a registration socket",
                    extra={"socket": str(path), "error": exc.details()},
                )
                return None
            if info.type != DRA_PLUGIN_TYPE:
                self._notified[key] = None
                return None
            version = choose_version(list(info.supported_versions))
            error = ""
            if version is None:
                error = (
                    f"none of the advertised services {list(info.supported_versions)} "
                    f"is supported; the kubelet supports {list(SUPPORTED_BY_KUBELET)}"
                )
            elif not info.endpoint:
                error = "the plugin gave no DRA endpoint"
            await stub.NotifyRegistrationStatus(
                pluginregistration_v1_pb2.RegistrationStatus(
                    plugin_registered=not error, error=error
                ),
                timeout=INFO_TIMEOUT,
            )
        if error or version is None:
            log.warning(
                "refused a DRA plugin registration",
                extra={"socket": str(path), "driver": info.name, "error": error},
            )
            self._notified[key] = None
            return None
        plugin = Plugin(info.name, info.endpoint, version, path)
        self._notified[key] = plugin
        log.info(
            "registered DRA plugin",
            extra={"driver": plugin.driver, "endpoint": plugin.endpoint, "version": version},
        )
        return plugin

    async def plugin(self, driver: str) -> Plugin:
        """The plugin for ``driver``; PluginNotRegistered when there is none."""
        plugins = await self.refresh()
        if driver not in plugins:
            raise PluginNotRegistered(driver)
        return plugins[driver]


async def _alive(path: Path) -> bool:
    async with grpc.aio.insecure_channel(f"unix://{path}") as channel:
        stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
        try:
            await stub.GetInfo(pluginregistration_v1_pb2.InfoRequest(), timeout=INFO_TIMEOUT)
        except grpc.aio.AioRpcError:
            return False
    return True


def _modules(version: str) -> tuple[Any, Any]:
    if version == V1:
        return dra_v1_pb2, dra_v1_pb2_grpc
    return dra_v1beta1_pb2, dra_v1beta1_pb2_grpc


def _endpoint_target(endpoint: str) -> str:
    return endpoint if endpoint.startswith("unix:") else f"unix://{endpoint}"


async def _call(plugin: Plugin, method: str, claims: Sequence[ClaimRef]) -> Any:
    """``method`` (NodePrepareResources or NodeUnprepareResources) for ``claims``; the reply."""
    pb2, pb2_grpc = _modules(plugin.version)
    request = getattr(pb2, f"{method}Request")(
        claims=[pb2.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]
    )
    async with grpc.aio.insecure_channel(_endpoint_target(plugin.endpoint)) as channel:
        stub = pb2_grpc.DRAPluginStub(channel)
        return await getattr(stub, method)(request, timeout=CALL_TIMEOUT)


def _no_entry(claim: ClaimRef) -> str:
    return f"the plugin's response has no entry for claim {claim.uid}"


async def node_prepare_resources(
    plugin: Plugin, claims: Sequence[ClaimRef]
) -> dict[str, PrepareResult]:
    """NodePrepareResources for ``claims``; claim UID -> result.

    A claim missing from the plugin's answer gets an error result, as the
    kubelet treats it ("NodePrepareResources will be called again").
    """
    response = await _call(plugin, "NodePrepareResources", claims)
    results: dict[str, PrepareResult] = {}
    for claim in claims:
        answer = response.claims.get(claim.uid)
        if answer is None:
            results[claim.uid] = PrepareResult(error=_no_entry(claim))
            continue
        devices = tuple(
            PreparedDevice(
                tuple(d.request_names), d.pool_name, d.device_name, tuple(d.cdi_device_ids)
            )
            for d in answer.devices
        )
        results[claim.uid] = PrepareResult(devices, answer.error)
    return results


async def node_unprepare_resources(plugin: Plugin, claims: Sequence[ClaimRef]) -> dict[str, str]:
    """NodeUnprepareResources for ``claims``; claim UID -> error ("" when done)."""
    response = await _call(plugin, "NodeUnprepareResources", claims)
    errors: dict[str, str] = {}
    for claim in claims:
        answer = response.claims.get(claim.uid)
        errors[claim.uid] = _no_entry(claim) if answer is None else answer.error
    return errors
