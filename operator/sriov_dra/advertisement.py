"""Which VFs a node advertises, and with which extra attributes (pure).

The Go driver's opt-in model (its ``docs/design/opt-in-advertisement.md``), over
our CRDs ``SriovResourcePolicy`` and ``DeviceAttributes``
(``sriovnetwork.k8snetworkplumbingwg.io/v1alpha1``, read in the driver's
namespace):

- Once at least one policy exists, a VF is published only when some config of a
  policy whose ``nodeSelector`` matches the node selects it. Policies are taken
  in name order and configs in list order; the first config that selects a VF
  decides its attributes.
- A config selects the VFs that match any of its ``resourceFilters`` (none, or
  ``{}``: every VF); within a filter every field set must match (vendors,
  devices, pciAddresses, pfNames, pfPciAddresses, drivers, linkType).
- Its extra attributes are those of every DeviceAttributes whose labels match its
  ``deviceAttributesSelector``, merged in name order (the last name wins a clash);
  no selector, no extra attributes. Built-in attribute names are never
  overridden: such a key is dropped and reported.
- With no policy at all, :class:`NoPolicyMode` decides: ``all`` (our default:
  every VF, no extra attribute) or ``none`` (the Go driver's behaviour).

A policy that cannot be applied (a malformed selector, an unknown linkType) is
reported as :class:`~sriov_dra.errors.InvalidResourcePolicy` naming the field and
left out; the other policies still apply. Publishing says nothing about
allocation: a VF that drops out of the slices stays with the claim that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from sriov_dra.constants import ATTR_CNI_RESOURCE_NAME
from sriov_dra.errors import InvalidDeviceAttributes, InvalidResourcePolicy, SriovDraError
from sriov_dra.label_selectors import (
    LabelSelector,
    NodeSelector,
    parse_label_selector,
    parse_node_selector,
)

API_GROUP: Final = "sriovnetwork.k8snetworkplumbingwg.io"
API_VERSION: Final = f"{API_GROUP}/v1alpha1"
POLICY_KIND: Final = "SriovResourcePolicy"
POLICY_PLURAL: Final = "sriovresourcepolicies"
ATTRIBUTES_KIND: Final = "DeviceAttributes"
ATTRIBUTES_PLURAL: Final = "deviceattributes"

LINK_TYPES: Final = {
    "eth": "ethernet",
    "ethernet": "ethernet",
    "ib": "infiniband",
    "infiniband": "infiniband",
}
"""linkType as written (case-insensitive) -> as discovery reports it."""

MAX_ATTRIBUTES_PER_DEVICE: Final = 32
"""resource.k8s.io/v1: attributes and capacities of one device together."""
MAX_STRING_ATTRIBUTE: Final = 64
VALUE_TYPES: Final = ("string", "int", "bool", "version")

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


class NoPolicyMode(StrEnum):
    """What a node advertises while no SriovResourcePolicy exists."""

    ALL = "all"
    """Every VF (our zero-config default, which the seed's demo relies on)."""
    NONE = "none"
    """No VF (the Go driver's opt-in default)."""


class VfCandidate(BaseModel):
    """What a policy's filters look at in one discovered VF."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str
    """The ResourceSlice device name."""
    pci_address: str
    vendor: str
    """PF vendor id, hex without 0x (as the ``vendor`` attribute)."""
    device_id: str
    """VF device id, hex without 0x."""
    pf_name: str
    pf_pci_address: str
    driver: str | None
    link_type: str


@dataclass(frozen=True)
class ObjectRef:
    """The policy or DeviceAttributes a problem is about (for its Event and log line)."""

    kind: str
    namespace: str
    name: str
    uid: str = ""

    def as_object(self) -> dict[str, Any]:
        """A minimal object an Event can name as its involvedObject."""
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


@dataclass(frozen=True)
class Problem:
    """A policy or DeviceAttributes (part) that was left out, and why."""

    subject: ObjectRef
    error: SriovDraError


@dataclass(frozen=True)
class Advertisement:
    """The outcome: device name -> extra attributes of each VF to publish."""

    devices: Mapping[str, Mapping[str, Mapping[str, Any]]]
    problems: tuple[Problem, ...] = ()

    def publishes(self, device: str) -> bool:
        """True when ``device`` is advertised."""
        return device in self.devices


@dataclass(frozen=True)
class ResourceFilter:
    """One ``resourceFilters`` entry; empty sets match any value."""

    vendors: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    pci_addresses: frozenset[str] = frozenset()
    pf_names: frozenset[str] = frozenset()
    pf_pci_addresses: frozenset[str] = frozenset()
    drivers: frozenset[str] = frozenset()
    link_type: str | None = None

    def matches(self, vf: VfCandidate) -> bool:
        """True when every field set matches ``vf``."""
        checks: tuple[tuple[frozenset[str], str | None], ...] = (
            (self.vendors, _hex(vf.vendor)),
            (self.devices, _hex(vf.device_id)),
            (self.pci_addresses, vf.pci_address.lower()),
            (self.pf_names, vf.pf_name),
            (self.pf_pci_addresses, vf.pf_pci_address.lower()),
            (self.drivers, vf.driver),
        )
        if any(wanted and value not in wanted for wanted, value in checks):
            return False
        return self.link_type is None or self.link_type == vf.link_type


@dataclass(frozen=True)
class PolicyConfig:
    """One ``configs`` entry."""

    attributes: LabelSelector | None
    filters: tuple[ResourceFilter, ...]

    def selects(self, vf: VfCandidate) -> bool:
        """True when any filter matches (no filter: every VF)."""
        return not self.filters or any(f.matches(vf) for f in self.filters)


@dataclass(frozen=True)
class ResourcePolicy:
    """A SriovResourcePolicy, parsed."""

    ref: ObjectRef
    node_selector: NodeSelector
    configs: tuple[PolicyConfig, ...]


@dataclass(frozen=True)
class DeviceAttributesObject:
    """A DeviceAttributes, parsed: its labels and its valid attributes by full name."""

    ref: ObjectRef
    labels: Mapping[str, str]
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _hex(value: str) -> str:
    value = value.lower()
    return value[2:] if value.startswith("0x") else value


def _ref(obj: Mapping[str, Any], kind: str) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        kind, str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
    )


def _strings(raw: Any, where: str, *, normalise: bool = False) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise InvalidResourcePolicy(
            "must be a list of strings", field=where, fix="quote each entry"
        )
    return frozenset(_hex(item) if normalise else item for item in raw)


def _filter(raw: Any, where: str) -> ResourceFilter:
    if not isinstance(raw, Mapping):
        raise InvalidResourcePolicy("must be an object", field=where, fix="write {vendors: [...]}")
    link_type = raw.get("linkType")
    normalised: str | None = None
    if link_type not in (None, ""):
        normalised = LINK_TYPES.get(str(link_type).lower())
        if normalised is None:
            raise InvalidResourcePolicy(
                f"unknown linkType {link_type!r}",
                field=f"{where}.linkType",
                fix="use eth, ethernet, ib or infiniband",
            )
    return ResourceFilter(
        vendors=_strings(raw.get("vendors"), f"{where}.vendors", normalise=True),
        devices=_strings(raw.get("devices"), f"{where}.devices", normalise=True),
        pci_addresses=frozenset(
            a.lower() for a in _strings(raw.get("pciAddresses"), f"{where}.pciAddresses")
        ),
        pf_names=_strings(raw.get("pfNames"), f"{where}.pfNames"),
        pf_pci_addresses=frozenset(
            a.lower() for a in _strings(raw.get("pfPciAddresses"), f"{where}.pfPciAddresses")
        ),
        drivers=_strings(raw.get("drivers"), f"{where}.drivers"),
        link_type=normalised,
    )


def parse_policy(obj: Mapping[str, Any]) -> ResourcePolicy:
    """A SriovResourcePolicy object as served; InvalidResourcePolicy naming the field."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise InvalidResourcePolicy("must be an object", field="spec", fix="write spec: {...}")
    configs = []
    raw_configs = spec.get("configs")
    raw_configs = [] if raw_configs is None else raw_configs
    if not isinstance(raw_configs, list):
        raise InvalidResourcePolicy("must be a list", field="spec.configs", fix="write a list")
    for index, raw in enumerate(raw_configs):
        where = f"spec.configs[{index}]"
        if not isinstance(raw, Mapping):
            raise InvalidResourcePolicy("must be an object", field=where, fix="write {...}")
        selector = raw.get("deviceAttributesSelector")
        attributes = (
            None
            if selector is None
            else parse_label_selector(selector, f"{where}.deviceAttributesSelector")
        )
        filters = raw.get("resourceFilters")
        filters = [] if filters is None else filters
        if not isinstance(filters, list):
            raise InvalidResourcePolicy(
                "must be a list", field=f"{where}.resourceFilters", fix="write a list"
            )
        configs.append(
            PolicyConfig(
                attributes,
                tuple(_filter(f, f"{where}.resourceFilters[{i}]") for i, f in enumerate(filters)),
            )
        )
    return ResourcePolicy(
        _ref(obj, POLICY_KIND),
        parse_node_selector(spec.get("nodeSelector"), "spec.nodeSelector"),
        tuple(configs),
    )


def qualified_name(key: str, driver: str) -> str:
    """The full attribute name: an unqualified one lives in the driver's domain."""
    return key if "/" in key else f"{driver}/{key}"


def _attribute_problem(key: Any, value: Any) -> str | None:
    if not isinstance(key, str):
        return "the name must be a string"
    domain, _, identifier = key.rpartition("/")
    if not _IDENTIFIER.match(identifier) or (
        "/" in key and (len(domain) > 63 or not _DOMAIN.match(domain))
    ):
        return (
            f"{key!r} is no qualified name (an optional DNS domain of at most 63 characters, "
            "'/', and a C identifier of at most 32)"
        )
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in VALUE_TYPES:
        return f"{key!r} must have exactly one of {', '.join(VALUE_TYPES)}"
    kind, item = next(iter(value.items()))
    valid = {
        "string": isinstance(item, str) and len(item) <= MAX_STRING_ATTRIBUTE,
        "int": isinstance(item, int) and not isinstance(item, bool),
        "bool": isinstance(item, bool),
        "version": isinstance(item, str) and bool(_SEMVER.match(item)),
    }[kind]
    if not valid:
        return f"{key!r}: {item!r} is no valid {kind}" + (
            f" (at most {MAX_STRING_ATTRIBUTE} characters)" if kind == "string" else ""
        )
    return None


def parse_device_attributes(
    obj: Mapping[str, Any], *, driver: str, reserved: frozenset[str]
) -> tuple[DeviceAttributesObject, list[Problem]]:
    """A DeviceAttributes object: its valid attributes, and a problem for each it drops
    (malformed, or a built-in name in ``reserved``, which a policy may not override)."""
    ref = _ref(obj, ATTRIBUTES_KIND)
    raw = (obj.get("spec") or {}).get("attributes") or {}
    problems: list[Problem] = []
    attributes: dict[str, Mapping[str, Any]] = {}
    if not isinstance(raw, Mapping):
        raw = {}
        problems.append(
            Problem(
                ref,
                InvalidDeviceAttributes(
                    "must map names to values", field="spec.attributes", fix="write a map"
                ),
            )
        )
    for key in sorted(raw, key=str):
        problem = _attribute_problem(key, raw[key])
        name = qualified_name(key, driver) if problem is None else str(key)
        if problem is None and name in reserved:
            problem = f"{name} is a built-in attribute and cannot be overridden"
        if problem is not None:
            problems.append(
                Problem(
                    ref,
                    InvalidDeviceAttributes(
                        problem, field=f"spec.attributes[{key}]", fix="rename or remove it"
                    ),
                )
            )
            continue
        attributes[name] = dict(raw[key])
    meta = obj.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    return DeviceAttributesObject(ref, labels, attributes), problems


def _merged(
    selector: LabelSelector | None, objects: Sequence[DeviceAttributesObject]
) -> dict[str, Mapping[str, Any]]:
    merged: dict[str, Mapping[str, Any]] = {}
    if selector is None:
        return merged
    for item in objects:
        if selector.matches(item.labels):
            merged.update(item.attributes)
    return merged


def _capped(
    attributes: dict[str, Mapping[str, Any]], room: int, policy: ResourcePolicy, index: int
) -> tuple[dict[str, Mapping[str, Any]], Problem | None]:
    if len(attributes) <= room:
        return attributes, None
    kept = dict(sorted(attributes.items())[:room])
    dropped = sorted(set(attributes) - set(kept))
    return kept, Problem(
        policy.ref,
        InvalidResourcePolicy(
            f"its DeviceAttributes add {len(attributes)} attributes, {room} fit beside the "
            f"built-in ones (at most {MAX_ATTRIBUTES_PER_DEVICE} per device); "
            f"left out: {', '.join(dropped)}",
            field=f"spec.configs[{index}].deviceAttributesSelector",
            fix="select fewer DeviceAttributes or drop attributes",
        ),
    )


def decide(
    *,
    node: str,
    node_labels: Mapping[str, str],
    vfs: Iterable[VfCandidate],
    policies: Sequence[Mapping[str, Any]],
    device_attributes: Sequence[Mapping[str, Any]],
    no_policy: NoPolicyMode,
    driver: str,
    reserved: frozenset[str],
) -> Advertisement:
    """Which of ``vfs`` node ``node`` publishes, with their extra attributes.

    ``policies`` and ``device_attributes`` are the objects of the driver's
    namespace as served; ``reserved`` the built-in attribute names.
    """
    vfs = list(vfs)
    if not policies:
        everything: dict[str, Mapping[str, Mapping[str, Any]]] = {vf.device: {} for vf in vfs}
        return Advertisement({} if no_policy is NoPolicyMode.NONE else everything)
    problems: list[Problem] = []
    objects: list[DeviceAttributesObject] = []
    for obj in sorted(device_attributes, key=lambda o: str(o["metadata"]["name"])):
        parsed, dropped = parse_device_attributes(obj, driver=driver, reserved=reserved)
        objects.append(parsed)
        problems.extend(dropped)
    # One slot stays free for the Multus resourceName the agent's --resource-name may add
    # after us: a 33rd attribute would make the API server refuse the whole slice.
    room = MAX_ATTRIBUTES_PER_DEVICE - len(reserved | {ATTR_CNI_RESOURCE_NAME})
    chosen: dict[str, Mapping[str, Mapping[str, Any]]] = {}
    for obj in sorted(policies, key=lambda o: str(o["metadata"]["name"])):
        try:
            policy = parse_policy(obj)
        except InvalidResourcePolicy as exc:
            problems.append(Problem(_ref(obj, POLICY_KIND), exc))
            continue
        if not policy.node_selector.matches(node, node_labels):
            continue
        for index, config in enumerate(policy.configs):
            attributes, problem = _capped(_merged(config.attributes, objects), room, policy, index)
            if problem is not None:
                problems.append(problem)
            for vf in vfs:
                if vf.device not in chosen and config.selects(vf):
                    chosen[vf.device] = attributes
    return Advertisement(chosen, tuple(problems))
