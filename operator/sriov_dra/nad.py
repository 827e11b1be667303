"""NetworkAttachmentDefinition ``spec.config`` parsed as an sriov CNI config.

The rules follow sriov-cni's ``LoadConf`` checks, made strict so that a bad NAD is
reported by the operator (an Event on the claim) instead of failing on the node:

- JSON object; a single plugin config, or a conflist (``plugins`` list of
  objects) whose FIRST plugin is the sriov one. Later plugins are kept in
  ``chained`` but never run: the node agent applies the sriov plugin's settings
  and runs its ``ipam`` only. Such a NAD is accepted; :func:`unrun_plugins_warning`
  says what is ignored, for the operator to tell the claim.
- ``type`` must be ``sriov``.
- ``vlan`` 0-4094; ``vlanQoS`` 0-7 and only with ``vlan`` (non-zero needs vlan != 0);
  ``vlanProto`` ``802.1q`` or ``802.1ad`` (case-insensitive, stored lower-case),
  only with ``vlan``, and ``802.1ad`` needs vlan != 0.
- ``spoofchk``/``trust`` ``on``|``off``; ``link_state`` ``auto``|``enable``|``disable``.
- ``min_tx_rate``/``max_tx_rate`` integers >= 0 (Mbps, 0 = no limit); when both are
  set and ``max_tx_rate`` limits (> 0), ``min_tx_rate <= max_tx_rate``.
- ``mac`` a unicast MAC ``aa:bb:cc:dd:ee:ff`` (stored lower-case).
- ``ipam`` an object with a ``type``; ``{}`` means no IPAM (the CNI idiom).
- ``deviceID`` (a NAD written for the classic SR-IOV stack) is accepted as the Go
  driver accepts it, when a string: the allocated VF's PCI address is used instead,
  and :func:`device_id_replaced` says so, for the operator to tell the claim.

Unknown keys are kept (CNI plugins ignore what they do not know).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from sriov_dra.errors import InvalidNad

DEFAULT_CNI_VERSION: Final = "1.0.0"
_MAC: Final = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_FIX_TYPE: Final = (
    'make the first plugin {"type": "sriov", ...}, or point netAttachDefName at a NAD of type sriov'
)


class SriovNetConf(BaseModel):
    """The validated sriov CNI config of a NAD."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    nad: str
    """``namespace/name`` of the NAD this came from."""
    cni_version: str = Field(DEFAULT_CNI_VERSION, alias="cniVersion")
    name: str
    type: str = "sriov"
    vlan: int | None = None
    vlan_qos: int | None = Field(None, alias="vlanQoS")
    vlan_proto: str | None = Field(None, alias="vlanProto")
    spoofchk: str | None = None
    trust: str | None = None
    link_state: str | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    mac: str | None = None
    ipam: dict[str, Any] | None = None
    device_id: str | None = Field(None, alias="deviceID")
    """The ``deviceID`` written in the NAD: never used, the allocated VF is."""
    raw: dict[str, Any]
    """The sriov plugin's config object as written in the NAD."""
    chained: list[dict[str, Any]] = Field(default_factory=list)
    """Plugins after sriov in a conflist (not run by the agent)."""

    def ipam_stdin(self) -> dict[str, Any]:
        """The network config to feed the IPAM plugin on stdin.

        Raises ``ValueError`` when the NAD has no IPAM (the caller checks ``ipam``).
        """
        if self.ipam is None:
            raise ValueError(f"NetworkAttachmentDefinition {self.nad} has no ipam")
        return {
            "cniVersion": self.cni_version,
            "name": self.name,
            "type": self.type,
            "ipam": dict(self.ipam),
        }


def _fail(nad: str, path: str, message: str, fix: str) -> InvalidNad:
    return InvalidNad(message, field=f"NetworkAttachmentDefinition {nad} {path}", fix=fix)


def _int(conf: dict[str, Any], key: str, low: int, high: int | None, nad: str, path: str) -> int:
    value = conf[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise _fail(
            nad,
            f"{path}.{key}",
            f"must be an integer {bound}, got {json.dumps(value)}",
            f"set {key} to an integer {bound}",
        )
    if high is not None and value > high:
        raise _fail(
            nad,
            f"{path}.{key}",
            f"must be an integer {low}-{high}, got {value}",
            f"set {key} to an integer {low}-{high}",
        )
    return value


def _choice(conf: dict[str, Any], key: str, allowed: tuple[str, ...], nad: str, path: str) -> str:
    value = conf[key]
    if not isinstance(value, str) or value not in allowed:
        options = "|".join(allowed)
        raise _fail(
            nad,
            f"{path}.{key}",
            f"must be one of {options}, got {json.dumps(value)}",
            f'set "{key}": "{allowed[0]}" (one of {options})',
        )
    return value


def parse_nad_config(config: str, *, nad: str) -> SriovNetConf:
    """Parse and validate a NAD's ``spec.config`` (``nad`` is ``namespace/name``).

    Raises :class:`~sriov_dra.errors.InvalidNad` naming ``spec.config`` and the key.
    """
    try:
        top = json.loads(config)
    except json.JSONDecodeError as exc:
        raise _fail(
            nad,
            "spec.config",
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "write spec.config as a JSON object string",
        ) from exc
    except (ValueError, RecursionError) as exc:
        # Valid JSON that Python will not read: an integer of more than 4300 digits
        # (ValueError), arrays or objects nested about a thousand deep (RecursionError).
        raise _fail(
            nad,
            "spec.config",
            "cannot be read: it has an integer of thousands of digits or is nested too deeply",
            "write spec.config as a plain sriov CNI config object",
        ) from exc
    if not isinstance(top, dict):
        raise _fail(
            nad,
            "spec.config",
            f"must be a JSON object, got {type(top).__name__}",
            'write spec.config as {"cniVersion": "1.0.0", "type": "sriov", ...}',
        )

    path = "spec.config"
    conf: dict[str, Any] = top
    chained: list[dict[str, Any]] = []
    if "plugins" in top:
        plugins = top["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise _fail(
                nad,
                "spec.config.plugins",
                "must be a non-empty list of plugin objects",
                'list the sriov plugin first: "plugins": [{"type": "sriov", ...}]',
            )
        for index, plugin in enumerate(plugins):
            if not isinstance(plugin, dict):
                raise _fail(
                    nad,
                    f"spec.config.plugins[{index}]",
                    f"must be a plugin object, got {json.dumps(plugin)}",
                    'write each plugin as an object: {"type": "...", ...}',
                )
        path = "spec.config.plugins[0]"
        conf = plugins[0]
        chained = list(plugins[1:])

    plugin_type = conf.get("type")
    if plugin_type != "sriov":
        got = "it is missing" if plugin_type is None else f"got {json.dumps(plugin_type)}"
        raise _fail(nad, f"{path}.type", f'must be "sriov", {got}', _FIX_TYPE)

    for key in ("cniVersion", "name", "deviceID"):
        for source in (top, conf):
            if key in source and not isinstance(source[key], str):
                where = "spec.config" if source is top else path
                raise _fail(
                    nad,
                    f"{where}.{key}",
                    f"must be a string, got {json.dumps(source[key])}",
                    f'quote it, e.g. "{key}": "..."',
                )
    cni_version = conf.get("cniVersion") or top.get("cniVersion") or DEFAULT_CNI_VERSION
    name = conf.get("name") or top.get("name") or nad.rsplit("/", 1)[-1]

    vlan = _int(conf, "vlan", 0, 4094, nad, path) if "vlan" in conf else None
    vlan_qos = None
    if "vlanQoS" in conf:
        vlan_qos = _int(conf, "vlanQoS", 0, 7, nad, path)
        if vlan is None:
            raise _fail(
                nad,
                f"{path}.vlanQoS",
                "is set but vlan is not",
                "set vlan (1-4094) or remove vlanQoS",
            )
        if vlan_qos and vlan == 0:
            raise _fail(
                nad,
                f"{path}.vlanQoS",
                f"is {vlan_qos} but vlan is 0 (untagged traffic has no priority)",
                "set vlan to 1-4094 or vlanQoS to 0",
            )
    vlan_proto = None
    if "vlanProto" in conf:
        raw_proto = conf["vlanProto"]
        vlan_proto = raw_proto.lower() if isinstance(raw_proto, str) else raw_proto
        if vlan_proto not in ("802.1q", "802.1ad"):
            raise _fail(
                nad,
                f"{path}.vlanProto",
                f"must be 802.1q or 802.1ad, got {json.dumps(raw_proto)}",
                'set "vlanProto": "802.1q" (or "802.1ad" for QinQ)',
            )
        if vlan is None:
            raise _fail(
                nad,
                f"{path}.vlanProto",
                "is set but vlan is not",
                "set vlan (1-4094) or remove vlanProto",
            )
        if vlan_proto == "802.1ad" and vlan == 0:
            raise _fail(
                nad,
                f"{path}.vlanProto",
                "is 802.1ad but vlan is 0",
                "set vlan to 1-4094 or use vlanProto 802.1q",
            )

    spoofchk = _choice(conf, "spoofchk", ("on", "off"), nad, path) if "spoofchk" in conf else None
    trust = _choice(conf, "trust", ("on", "off"), nad, path) if "trust" in conf else None
    link_state = (
        _choice(conf, "link_state", ("auto", "enable", "disable"), nad, path)
        if "link_state" in conf
        else None
    )
    min_rate = _int(conf, "min_tx_rate", 0, None, nad, path) if "min_tx_rate" in conf else None
    max_rate = _int(conf, "max_tx_rate", 0, None, nad, path) if "max_tx_rate" in conf else None
    if min_rate is not None and max_rate and min_rate > max_rate:
        raise _fail(
            nad,
            f"{path}.min_tx_rate",
            f"is {min_rate} Mbps, above max_tx_rate {max_rate} Mbps",
            "lower min_tx_rate or raise max_tx_rate (0 = no limit)",
        )

    mac = None
    if "mac" in conf:
        raw_mac = conf["mac"]
        mac = raw_mac.lower() if isinstance(raw_mac, str) else None
        if mac is None or not _MAC.fullmatch(mac):
            raise _fail(
                nad,
                f"{path}.mac",
                f"must be a MAC address like 02:00:00:00:00:01, got {json.dumps(raw_mac)}",
                'set "mac": "02:00:00:00:00:01" or remove it',
            )
        if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
            raise _fail(
                nad,
                f"{path}.mac",
                f"{mac} is not a unicast address",
                "use a unicast MAC (first octet even, e.g. 02:...), or remove it",
            )

    ipam = None
    if "ipam" in conf:
        raw_ipam = conf["ipam"]
        if not isinstance(raw_ipam, dict):
            raise _fail(
                nad,
                f"{path}.ipam",
                f"must be an object, got {json.dumps(raw_ipam)}",
                'write "ipam": {"type": "host-local", ...} or remove it',
            )
        if raw_ipam:
            ipam_type = raw_ipam.get("type")
            if not isinstance(ipam_type, str) or not ipam_type:
                raise _fail(
                    nad,
                    f"{path}.ipam.type",
                    "is required when ipam is set",
                    'set "type": "host-local" (or another IPAM plugin) in ipam',
                )
            ipam = raw_ipam

    return SriovNetConf(
        nad=nad,
        cniVersion=cni_version,
        name=name,
        vlan=vlan,
        vlanQoS=vlan_qos,
        vlanProto=vlan_proto,
        spoofchk=spoofchk,
        trust=trust,
        link_state=link_state,
        min_tx_rate=min_rate,
        max_tx_rate=max_rate,
        mac=mac,
        ipam=ipam,
        deviceID=conf.get("deviceID"),
        raw=conf,
        chained=chained,
    )


def unrun_plugins(conf: SriovNetConf) -> list[str]:
    """Types of the plugins chained after sriov, in order: the node agent runs none of them."""
    return [
        p["type"] if isinstance(p.get("type"), str) and p["type"] else "(no type)"
        for p in conf.chained
    ]


def unrun_plugins_warning(conf: SriovNetConf) -> str | None:
    """What a claim using this NAD should be told about its ignored plugins, if any."""
    types = unrun_plugins(conf)
    if not types:
        return None
    return (
        f"NetworkAttachmentDefinition {conf.nad} chains plugins after sriov that are never run: "
        f"{', '.join(types)} (spec.config.plugins[1:]); only the sriov plugin's VF settings "
        "and its ipam are applied; fix: move what they set into the sriov plugin's config "
        "(e.g. mac, vlan, spoofchk, trust, link_state, min_tx_rate, max_tx_rate) or drop them "
        "from spec.config.plugins"
    )


def device_id_replaced(conf: SriovNetConf, request: str, pci_address: str) -> str | None:
    """What a claim should be told when its NAD sets ``deviceID``: the allocated VF
    ``pci_address`` (of ``request``) is used instead. None when the NAD sets none."""
    if conf.device_id is None:
        return None
    return (
        f"NetworkAttachmentDefinition {conf.nad} sets deviceID {conf.device_id!r} "
        f"(spec.config), as written for the classic SR-IOV device plugin; request {request!r} "
        f"uses its allocated VF {pci_address} instead; fix: nothing is needed, or remove "
        "deviceID from the NAD, since with DRA the allocation chooses the VF"
    )
