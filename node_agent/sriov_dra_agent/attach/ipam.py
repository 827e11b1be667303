"""Run a CNI IPAM plugin (e.g. ``host-local``) through the CNI protocol.

The plugin gets the network config on stdin and the ``CNI_*`` variables in its
environment; it answers a result (ADD) or nothing (DEL, CHECK) on stdout with exit
0, or a ``{"code", "msg", "details"}`` error on stdout with a non-zero exit.
Parsing is pure (:func:`parse_result`, :func:`parse_error`); :func:`ipam_add`,
:func:`ipam_del` and :func:`ipam_check` exec the plugin. :class:`PendingAdd` and
:class:`PendingDel` start it and answer later, so that a plugin that never looks into
the container (:func:`netns_free`) runs while the VF moves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field
from sriov_dra.errors import IpamError
from sriov_dra.nad import SriovNetConf

DEFAULT_CNI_PATH: Final = "/usr/lib/cni:/opt/cni/bin"
TIMEOUT_SECONDS: Final = 30.0
NETNS_FREE_PLUGINS: Final = frozenset({"host-local", "static"})
"""IPAM plugins that neither enter the container's netns nor need its interface
(``dhcp`` does both)."""


class IpConfig(BaseModel):
    """One address from the plugin."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    address: str
    """CIDR, e.g. ``10.0.3.5/24``."""
    gateway: str | None = None


class Route(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    dst: str
    gw: str | None = None


class IpamResult(BaseModel):
    """The parts of a CNI result an IPAM plugin fills in."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cni_version: str = Field(default="", alias="cniVersion")
    ips: tuple[IpConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: dict[str, Any] = Field(default_factory=dict)


def _field(plugin: str) -> str:
    return f"spec.config.ipam ({plugin})"


def plugin_type(netconf: Mapping[str, Any]) -> str:
    """The IPAM plugin a network config names; raises :class:`IpamError` when none."""
    ipam = netconf.get("ipam")
    kind = ipam.get("type") if isinstance(ipam, Mapping) else None
    if not isinstance(kind, str) or not kind or "/" in kind:
        raise IpamError(
            "no IPAM plugin type",
            field="spec.config.ipam.type",
            fix='set ipam.type, e.g. "host-local"',
        )
    return kind


def find_plugin(kind: str, cni_path: str) -> Path:
    """The first executable named ``kind`` on ``cni_path`` (``:``-separated dirs)."""
    for directory in cni_path.split(":"):
        candidate = Path(directory) / kind
        if directory and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise IpamError(
        f"IPAM plugin {kind!r} not found in CNI_PATH {cni_path}",
        field="spec.config.ipam.type",
        fix="install containernetworking-plugins or point --cni-path at the plugin directory",
    )


def parse_error(stdout: str, *, plugin: str, returncode: int, stderr: str) -> IpamError:
    """The :class:`IpamError` for a failed plugin run (CNI error JSON on stdout if any)."""
    try:
        data = json.loads(stdout)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and "msg" in data:
        code = data.get("code")
        # The CNI spec says uint; a plugin that answers otherwise still gets its message told.
        code = code if isinstance(code, int) and not isinstance(code, bool) else 0
        message = str(data["msg"])
        if data.get("details"):
            message += f" ({data['details']})"
        exhausted = "no IP addresses available" in message
        fix = (
            "widen the NAD's ipam range or release claims holding addresses"
            if exhausted
            else "fix the NAD's ipam section"
        )
        return IpamError(f"{plugin}: {message}", field=_field(plugin), fix=fix, code=code)
    detail = (stderr or stdout).strip()[:500] or "no output"
    return IpamError(
        f"{plugin} exited {returncode}: {detail}",
        field=_field(plugin),
        fix="check the plugin and the NAD's ipam section",
    )


def parse_result(stdout: str, *, plugin: str) -> IpamResult:
    """Parse an ADD result; at least one valid address is required."""
    try:
        result = IpamResult.model_validate_json(stdout)
    except ValueError as exc:
        raise IpamError(
            f"{plugin} returned an unreadable result: {exc}",
            field=_field(plugin),
            fix="use a CNI IPAM plugin that speaks CNI 0.3.0 or later",
        ) from exc
    if not result.ips:
        raise IpamError(
            f"{plugin} returned no IP address",
            field=_field(plugin),
            fix="configure at least one range in the NAD's ipam section",
        )
    for ip in result.ips:
        try:
            ipaddress.ip_interface(ip.address)
        except ValueError as exc:
            raise IpamError(
                f"{plugin} returned a bad address {ip.address!r}",
                field=_field(plugin),
                fix="check the plugin",
            ) from exc
    return result


def container_id(claim_uid: str, request: str) -> str:
    """CNI_CONTAINERID tying an address to a claim's request (not to a pod)."""
    return f"{claim_uid}-{request.replace('/', '-')}"


def nad_ipam_conf(conf: SriovNetConf, *, default_data_dir: Path) -> dict[str, Any] | None:
    """The IPAM plugin's stdin for a NAD (``None``: the NAD asks for no addresses).

    host-local without a ``dataDir`` gets ``default_data_dir``, so that simulated
    nodes sharing one host keep their leases apart.
    """
    if not conf.ipam:
        return None
    stdin = conf.ipam_stdin()
    section = dict(stdin["ipam"])
    if section.get("type") == "host-local" and "dataDir" not in section:
        section["dataDir"] = str(default_data_dir)
    stdin["ipam"] = section
    return stdin


def netns_free(netconf: Mapping[str, Any]) -> bool:
    """Whether the config's IPAM plugin may run before the interface is in the netns
    (and after it left); raises :class:`IpamError` when the config names none."""
    return plugin_type(netconf) in NETNS_FREE_PLUGINS


class PluginRun:
    """One exec of an IPAM plugin for (``container``, ``ifname``), started at
    construction; :meth:`output` waits for it."""

    command: ClassVar[str]
    """``CNI_COMMAND``."""

    def __init__(
        self,
        netconf: Mapping[str, Any],
        *,
        container: str,
        ifname: str,
        netns: str,
        cni_path: str = DEFAULT_CNI_PATH,
    ) -> None:
        self.kind = plugin_type(netconf)
        command = self.command
        plugin = find_plugin(self.kind, cni_path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            # host-local never opens the netns but the CNI skeleton insists on the variable.
            "CNI_NETNS": netns or "/dev/null",
            "CNI_IFNAME": ifname,
            "CNI_PATH": cni_path,
        }
        # The config waits in a memfd, not a pipe: the plugin reads it whenever it
        # starts, while this thread goes on (a pipe would block on a large config).
        stdin = os.memfd_create("cni-netconf", os.MFD_CLOEXEC)
        try:
            os.write(stdin, json.dumps(netconf).encode())
            os.lseek(stdin, 0, os.SEEK_SET)
            self._proc = subprocess.Popen(
                [str(plugin)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
        finally:
            os.close(stdin)

    def output(self) -> str:
        """Wait for the plugin; its stdout, or :class:`IpamError` when it failed."""
        try:
            stdout, stderr = self._proc.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as exc:
            self._proc.kill()
            self._proc.communicate()
            raise IpamError(
                f"{self.kind} {self.command} timed out after {TIMEOUT_SECONDS:.0f}s",
                field=_field(self.kind),
                fix="check the IPAM plugin (a dhcp daemon that does not answer?)",
            ) from exc
        if self._proc.returncode != 0:
            raise parse_error(
                stdout, plugin=self.kind, returncode=self._proc.returncode, stderr=stderr
            )
        return stdout

    def settle(self) -> None:
        """Wait for the plugin to end, whatever it answers (on a path that fails anyway)."""
        if self._proc.returncode is None:
            with contextlib.suppress(IpamError):
                self.output()


class PendingAdd(PluginRun):
    """A started CNI ADD."""

    command = "ADD"

    def result(self) -> IpamResult:
        """The addresses allocated; raises :class:`IpamError`."""
        return parse_result(self.output(), plugin=self.kind)


class PendingDel(PluginRun):
    """A started CNI DEL (idempotent)."""

    command = "DEL"

    def done(self) -> None:
        """Wait until the addresses are released; raises :class:`IpamError`."""
        self.output()


class PendingCheck(PluginRun):
    """A started CNI CHECK."""

    command = "CHECK"


def ipam_add(
    netconf: Mapping[str, Any],
    *,
    container: str,
    ifname: str,
    netns: str,
    cni_path: str = DEFAULT_CNI_PATH,
) -> IpamResult:
    """CNI ADD: allocate addresses for (``container``, ``ifname``); raises :class:`IpamError`."""
    return PendingAdd(
        netconf, container=container, ifname=ifname, netns=netns, cni_path=cni_path
    ).result()


def ipam_del(
    netconf: Mapping[str, Any],
    *,
    container: str,
    ifname: str,
    netns: str = "",
    cni_path: str = DEFAULT_CNI_PATH,
) -> None:
    """CNI DEL: release what (``container``, ``ifname``) holds. Idempotent."""
    PendingDel(netconf, container=container, ifname=ifname, netns=netns, cni_path=cni_path).done()


def ipam_check(
    netconf: Mapping[str, Any],
    previous: IpamResult,
    *,
    container: str,
    ifname: str,
    netns: str,
    cni_path: str = DEFAULT_CNI_PATH,
) -> None:
    """CNI CHECK with ``previous`` as prevResult; raises :class:`IpamError` when it fails."""
    conf = dict(netconf)
    conf["prevResult"] = previous.model_dump(by_alias=True, exclude_none=True)
    PendingCheck(conf, container=container, ifname=ifname, netns=netns, cni_path=cni_path).output()
