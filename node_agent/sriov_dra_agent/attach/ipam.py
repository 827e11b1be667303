"""Run a CNI IPAM plugin (e.g. ``host-local``) through the CNI protocol.

The plugin gets the network config on stdin and the ``CNI_*`` variables in its
environment; it answers a result (ADD) or nothing (DEL, CHECK) on stdout with exit
0, or a ``{"code", "msg", "details"}`` error on stdout with a non-zero exit.
Parsing is pure (:func:`parse_result`, :func:`parse_error`); :func:`ipam_add`,
:func:`ipam_del` and :func:`ipam_check` exec the plugin.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from sriov_dra.errors import IpamError
from sriov_dra.nad import SriovNetConf

DEFAULT_CNI_PATH: Final = "/usr/lib/cni:/opt/cni/bin"
TIMEOUT_SECONDS: Final = 30.0


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


def _run(
    command: str,
    netconf: Mapping[str, Any],
    *,
    container: str,
    ifname: str,
    netns: str,
    cni_path: str,
) -> subprocess.CompletedProcess[str]:
    kind = plugin_type(netconf)
    plugin = find_plugin(kind, cni_path)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        # host-local never opens the netns but the CNI skeleton insists on the variable.
        "CNI_NETNS": netns or "/dev/null",
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path,
    }
    try:
        proc = subprocess.run(
            [str(plugin)],
            input=json.dumps(netconf),
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IpamError(
            f"{kind} {command} timed out after {TIMEOUT_SECONDS:.0f}s",
            field=_field(kind),
            fix="check the IPAM plugin (a dhcp daemon that does not answer?)",
        ) from exc
    if proc.returncode != 0:
        raise parse_error(proc.stdout, plugin=kind, returncode=proc.returncode, stderr=proc.stderr)
    return proc


def ipam_add(
    netconf: Mapping[str, Any],
    *,
    container: str,
    ifname: str,
    netns: str,
    cni_path: str = DEFAULT_CNI_PATH,
) -> IpamResult:
    """CNI ADD: allocate addresses for (``container``, ``ifname``); raises :class:`IpamError`."""
    proc = _run("ADD", netconf, container=container, ifname=ifname, netns=netns, cni_path=cni_path)
    return parse_result(proc.stdout, plugin=plugin_type(netconf))


def ipam_del(
    netconf: Mapping[str, Any],
    *,
    container: str,
    ifname: str,
    netns: str = "",
    cni_path: str = DEFAULT_CNI_PATH,
) -> None:
    """CNI DEL: release what (``container``, ``ifname``) holds. Idempotent."""
    _run("DEL", netconf, container=container, ifname=ifname, netns=netns, cni_path=cni_path)


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
    _run("CHECK", conf, container=container, ifname=ifname, netns=netns, cni_path=cni_path)
