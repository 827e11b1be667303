"""VF settings: from a NAD's sriov config to what to apply, what to save and how to restore.

Pure decisions (:func:`settings_from_netconf`, :func:`plan`, :func:`restore_plan`) over
:class:`VfSettings`, plus the thin :func:`apply` step that hands a plan to a backend.
The same model describes a desired configuration and an observed state; in an
observed state ``None`` means the backend cannot read that setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from sriov_dra.errors import InvalidNad

if TYPE_CHECKING:
    from sriov_dra_agent.vf.backends.base import VfBackend
    from sriov_dra_agent.vf.inventory import VfInfo

VlanProto = Literal["802.1q", "802.1ad"]
LinkState = Literal["auto", "enable", "disable"]

SETTINGS: Final = (
    "mac",
    "vlan",
    "qos",
    "proto",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
)
"""Every setting, in the order they are applied."""

_GROUPS: Final = (("vlan", "qos", "proto"), ("min_tx_rate", "max_tx_rate"))
"""Settings the kernel takes in one attribute: changing one re-sends the others."""

_DEFAULTS: Final[dict[str, Any]] = {"vlan": 0, "qos": 0, "proto": "802.1q", "min_tx_rate": 0}


class VfSettings(BaseModel):
    """PF-side settings of one VF (what ``ip link set <pf> vf N ...`` controls)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mac: str | None = None
    """Administrative MAC, lower case."""
    vlan: int | None = Field(default=None, ge=0, le=4094)
    qos: int | None = Field(default=None, ge=0, le=7)
    proto: VlanProto | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState | None = None
    min_tx_rate: int | None = Field(default=None, ge=0)
    max_tx_rate: int | None = Field(default=None, ge=0)

    def fields_set(self) -> tuple[str, ...]:
        """Names of the settings that are not ``None``, in apply order."""
        return tuple(name for name in SETTINGS if getattr(self, name) is not None)

    def only(self, names: tuple[str, ...]) -> VfSettings:
        """A copy keeping only ``names``."""
        return VfSettings(**{name: getattr(self, name) for name in names})


class ApplyResult(BaseModel):
    """What an apply step did: never claims a setting the backend could not apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    applied: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    """Requested settings that already had the wanted value."""
    unsupported: dict[str, str] = Field(default_factory=dict)
    """Setting name -> why the backend cannot apply it."""


def _on_off(config: Mapping[str, Any], key: str) -> bool | None:
    value = config.get(key)
    if value is None:
        return None
    if value not in ("on", "off"):
        raise InvalidNad(
            f"{key} is {value!r}",
            field=f"spec.config.{key}",
            fix=f'set {key} to "on" or "off"',
        )
    return bool(value == "on")


def _int(config: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidNad(
            f"{key} is {value!r}",
            field=f"spec.config.{key}",
            fix=f"set {key} to an integer from {low} to {high}",
        )
    return value


def settings_from_netconf(config: Mapping[str, Any]) -> VfSettings:
    """The VF settings a sriov CNI config (the NAD's ``spec.config`` as a dict) asks for.

    Keys as sriov-cni names them: ``vlan``, ``vlanQoS``, ``vlanProto``, ``mac``,
    ``spoofchk``, ``trust``, ``link_state``, ``min_tx_rate``, ``max_tx_rate``.
    ``vlanQoS`` and ``vlanProto`` need ``vlan``; with ``vlan`` they default to 0 and
    802.1q as in sriov-cni. Raises :class:`InvalidNad` naming the key and the fix.
    """
    vlan = _int(config, "vlan", 0, 4094)
    qos = _int(config, "vlanQoS", 0, 7)
    raw_proto = config.get("vlanProto")
    proto: VlanProto | None = None
    if raw_proto is not None:
        lowered = str(raw_proto).lower()
        if lowered not in ("802.1q", "802.1ad"):
            raise InvalidNad(
                f"vlanProto is {raw_proto!r}",
                field="spec.config.vlanProto",
                fix='set vlanProto to "802.1q" or "802.1ad"',
            )
        proto = "802.1ad" if lowered == "802.1ad" else "802.1q"
    if vlan is None and (qos is not None or proto is not None):
        raise InvalidNad(
            "vlanQoS and vlanProto need vlan",
            field="spec.config.vlan",
            fix="set vlan, or remove vlanQoS/vlanProto",
        )
    if vlan == 0 and (qos or proto == "802.1ad"):
        raise InvalidNad(
            "a non-zero vlanQoS or 802.1ad needs a non-zero vlan",
            field="spec.config.vlan",
            fix="set vlan to 1..4094",
        )
    if vlan is not None:
        qos = qos or 0
        proto = proto or "802.1q"
    link_state = config.get("link_state")
    if link_state is not None and link_state not in ("auto", "enable", "disable"):
        raise InvalidNad(
            f"link_state is {link_state!r}",
            field="spec.config.link_state",
            fix='set link_state to "auto", "enable" or "disable"',
        )
    min_rate = _int(config, "min_tx_rate", 0, 2**32 - 1)
    max_rate = _int(config, "max_tx_rate", 0, 2**32 - 1)
    if min_rate and max_rate and min_rate > max_rate:
        raise InvalidNad(
            f"min_tx_rate {min_rate} exceeds max_tx_rate {max_rate}",
            field="spec.config.min_tx_rate",
            fix="make min_tx_rate <= max_tx_rate (0 means no limit)",
        )
    mac = config.get("mac")
    return VfSettings(
        mac=str(mac).lower() if mac else None,
        vlan=vlan,
        qos=qos,
        proto=proto,
        spoofchk=_on_off(config, "spoofchk"),
        trust=_on_off(config, "trust"),
        link_state=link_state,
        min_tx_rate=min_rate,
        max_tx_rate=max_rate,
    )


def _with_groups(names: set[str], values: VfSettings, fallback: VfSettings) -> VfSettings:
    """Keep ``names``; complete each touched group from ``values``, ``fallback``, defaults."""
    chosen = dict.fromkeys(names)
    for group in _GROUPS:
        if names & set(group):
            chosen.update(dict.fromkeys(group))
    out: dict[str, Any] = {}
    for name in SETTINGS:
        if name not in chosen:
            continue
        value = getattr(values, name)
        if value is None:
            value = getattr(fallback, name)
        if value is None:
            value = _DEFAULTS.get(name)
        if value is not None:
            out[name] = value
    return VfSettings(**out)


def plan(desired: VfSettings, current: VfSettings) -> VfSettings:
    """The settings to send so that ``current`` becomes ``desired``.

    Only requested settings that differ (or cannot be read) are sent; a VLAN or rate
    change re-sends its whole kernel attribute. Re-running after a partial apply
    sends only what is still missing.
    """
    differing = {
        name
        for name in desired.fields_set()
        if getattr(current, name) is None or getattr(current, name) != getattr(desired, name)
    }
    return _with_groups(differing, desired, current)


def restore_plan(original: VfSettings, applied: VfSettings) -> VfSettings:
    """The settings that put back what ``applied`` changed, from the saved ``original``.

    Settings the backend could not read at save time (``None`` in ``original``) are
    left as they are rather than guessed, except grouped values that fall back to
    the kernel defaults (VLAN 0, QoS 0, 802.1q, no minimum rate).
    """
    touched = {name for name in applied.fields_set() if getattr(original, name) is not None}
    return _with_groups(touched, original, VfSettings())


def apply(backend: VfBackend, vf: VfInfo, desired: VfSettings) -> ApplyResult:
    """Read the VF, send only what differs, and report per setting what happened."""
    current = backend.read_vf_state(vf)
    changes = plan(desired, current)
    result = backend.apply_vf_settings(vf, changes) if changes.fields_set() else ApplyResult()
    unchanged = tuple(
        name
        for name in desired.fields_set()
        if name not in result.applied and name not in result.unsupported
    )
    return ApplyResult(applied=result.applied, unchanged=unchanged, unsupported=result.unsupported)
