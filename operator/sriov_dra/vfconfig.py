"""The opaque ``VfConfig``: strict validation, class-then-claim merge, NAD reference
and pod interface names.

A ``VfConfig`` reaches us as ``opaque.parameters`` of a DeviceClass config entry
or a ResourceClaim config entry. Validation is strict so that a typo fails at the
operator, with an Event naming the field, instead of on the node at prepare time.

Rules (each refusal raises :class:`~sriov_dra.errors.InvalidVfConfig`):

- ``apiVersion`` must be ``sriovnetwork.k8snetworkplumbingwg.io/v1alpha1`` and
  ``kind`` ``VfConfig``; no other keys than the six fields below.
- ``ifName`` (may be empty = generated): the kernel's rules (1..15 bytes; no ``/``,
  ``:`` or whitespace; not ``.`` or ``..``), printable ASCII, and not a name every
  pod already has (:data:`RESERVED_IF_NAMES`).
- ``netAttachDefName``: DNS-1123 subdomain; ``netAttachDefNamespace``: DNS-1123 label.
- ``driver``: one of :data:`VF_DRIVERS`.
- ``addVhostMount``: a JSON boolean.
- ``rdma`` (ours; the Go driver has no such field and always adds the RDMA devices of
  an RDMA-capable VF): a JSON boolean. Unset, an RDMA-capable VF on a kernel driver
  gets its RDMA character devices; ``true`` requires them; ``false`` leaves them out.
  ``rdma: true`` with ``driver: vfio-pci`` is refused, in one entry or merged: a VF
  handed to vfio-pci leaves the kernel's RDMA stack, so it has no RDMA device to give
  (the failure of the Go driver's PR #142).

Merge rule (:func:`effective_vfconfig`): class entries first, then claim entries,
each in list order; a later non-empty string field replaces an earlier one, and a
later entry that *sets* ``addVhostMount`` or ``rdma`` (true or false) replaces the earlier value.
Every field survives the merge (the Go driver drops ``netAttachDefNamespace`` and
``addVhostMount``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from sriov_dra.claim_requests import listed
from sriov_dra.constants import VFCONFIG_API_VERSION, VFCONFIG_KIND
from sriov_dra.errors import InvalidVfConfig

RESERVED_IF_NAMES: Final = frozenset({"lo", "eth0"})
"""Interface names every pod already has; a VF must not take them."""

VF_DRIVERS: Final = (
    "",
    "default",
    "vfio-pci",
    "iavf",
    "i40evf",
    "ixgbevf",
    "igbvf",
    "mlx5_core",
    "mlx4_core",
    "bnxt_en",
    "qede",
    "enic",
)
"""Accepted ``driver`` values: ``""`` keeps the VF's current driver, ``default`` puts a
VF found on a userspace driver back on the kernel's default (a kernel driver is kept),
``vfio-pci`` binds for userspace (DPDK, VMs), and the rest are the kernel VF drivers of
common NICs. ``igb_uio``/``uio_pci_generic`` are refused: the node cannot load them."""

DEFAULT_IF_PREFIX: Final = "vfnet"
"""Prefix of generated interface names (``vfnet0``, ``vfnet1``...), as the Go driver."""

MAX_IF_NAME: Final = 15
"""IFNAMSIZ - 1: the kernel's limit on interface-name length in bytes."""

_FIELDS: Final = (
    "driver",
    "ifName",
    "netAttachDefName",
    "netAttachDefNamespace",
    "addVhostMount",
    "rdma",
)
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
CONFIG_FIELD: Final = "status.allocation.devices.config"


class VfConfig(BaseModel):
    """The validated, typed ``VfConfig`` (apiVersion and kind are checked, not kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    driver: str = ""
    if_name: str = Field("", alias="ifName")
    net_attach_def_name: str = Field("", alias="netAttachDefName")
    net_attach_def_namespace: str = Field("", alias="netAttachDefNamespace")
    add_vhost_mount: bool = Field(False, alias="addVhostMount")
    rdma: bool | None = None
    """None: the RDMA devices of an RDMA-capable VF on a kernel driver; True: required."""


def _example() -> str:
    return (
        f"apiVersion: {VFCONFIG_API_VERSION}, kind: {VFCONFIG_KIND}, "
        "ifName: net1, netAttachDefName: <nad>"
    )


def if_name_problem(name: str) -> str:
    """Why ``name`` cannot be a pod interface name, or ``""`` when it can."""
    if not name:
        return "must not be empty"
    if len(name.encode()) > MAX_IF_NAME:
        return f"is {len(name.encode())} bytes long, the kernel allows at most {MAX_IF_NAME}"
    if name in (".", ".."):
        return f"must not be {name!r}"
    for char in name:
        if char in "/:":
            return f"must not contain {char!r}"
        if char.isspace():
            return "must not contain whitespace"
        if not (char.isascii() and char.isprintable()):
            return f"must be printable ASCII, found {char!r}"
    if name in RESERVED_IF_NAMES:
        return "is already in every pod"
    return ""


def dns_subdomain_problem(value: str) -> str:
    """Why ``value`` is not a DNS-1123 subdomain, or ``""``."""
    if len(value) > 253:
        return f"is {len(value)} characters long, at most 253 allowed"
    if not all(_DNS_LABEL.fullmatch(part) for part in value.split(".")):
        return (
            "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return ""


def dns_label_problem(value: str) -> str:
    """Why ``value`` is not a DNS-1123 label, or ``""``."""
    if len(value) > 63:
        return f"is {len(value)} characters long, at most 63 allowed"
    if not _DNS_LABEL.fullmatch(value):
        return (
            "must be a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return ""


def _want_string(parameters: Mapping[str, Any], key: str, field: str) -> str:
    value = parameters.get(key, "")
    if not isinstance(value, str):
        raise InvalidVfConfig(
            f"must be a string, got {type(value).__name__} {value!r}",
            field=f"{field}.{key}",
            fix=f'quote the value, e.g. {key}: "..."',
        )
    return value


def parse_vfconfig(parameters: Mapping[str, Any], *, field: str) -> VfConfig:
    """Validate one opaque ``parameters`` object strictly and return the typed config.

    ``field`` is the path of ``parameters`` for messages, e.g.
    ``spec.devices.config[0].opaque.parameters``.
    """
    if not isinstance(parameters, Mapping):
        raise InvalidVfConfig(
            f"must be an object, got {type(parameters).__name__}",
            field=field,
            fix=f"write parameters as an object: {_example()}",
        )
    api_version = parameters.get("apiVersion")
    if api_version != VFCONFIG_API_VERSION:
        got = "it is missing" if api_version is None else f"got {api_version!r}"
        raise InvalidVfConfig(
            f"must be {VFCONFIG_API_VERSION!r}, {got}",
            field=f"{field}.apiVersion",
            fix=f"set apiVersion: {VFCONFIG_API_VERSION}",
        )
    kind = parameters.get("kind")
    if kind != VFCONFIG_KIND:
        got = "it is missing" if kind is None else f"got {kind!r}"
        raise InvalidVfConfig(
            f"must be {VFCONFIG_KIND!r}, {got}",
            field=f"{field}.kind",
            fix=f"set kind: {VFCONFIG_KIND}",
        )
    unknown = sorted(set(parameters) - {"apiVersion", "kind", *_FIELDS})
    if unknown:
        raise InvalidVfConfig(
            f"unknown field {unknown[0]!r}",
            field=f"{field}.{unknown[0]}",
            fix=f"remove it; VfConfig fields are {', '.join(_FIELDS)}",
        )

    driver = _want_string(parameters, "driver", field)
    if driver not in VF_DRIVERS:
        raise InvalidVfConfig(
            f"unsupported VF driver {driver!r}",
            field=f"{field}.driver",
            fix="use one of " + ", ".join(repr(d) for d in VF_DRIVERS),
        )
    if_name = _want_string(parameters, "ifName", field)
    if if_name and (problem := if_name_problem(if_name)):
        raise InvalidVfConfig(
            f"interface name {if_name!r} {problem}",
            field=f"{field}.ifName",
            fix="use a Linux interface name of 1-15 characters such as net1, "
            "or leave ifName empty for a generated name",
        )
    nad_name = _want_string(parameters, "netAttachDefName", field)
    if nad_name and (problem := dns_subdomain_problem(nad_name)):
        raise InvalidVfConfig(
            f"NetworkAttachmentDefinition name {nad_name!r} {problem}",
            field=f"{field}.netAttachDefName",
            fix="use the metadata.name of an existing NetworkAttachmentDefinition",
        )
    nad_namespace = _want_string(parameters, "netAttachDefNamespace", field)
    if nad_namespace and (problem := dns_label_problem(nad_namespace)):
        raise InvalidVfConfig(
            f"namespace {nad_namespace!r} {problem}",
            field=f"{field}.netAttachDefNamespace",
            fix="use the NAD's namespace, or leave it empty for the claim's namespace",
        )
    vhost = parameters.get("addVhostMount", False)
    if not isinstance(vhost, bool):
        raise InvalidVfConfig(
            f"must be a boolean, got {type(vhost).__name__} {vhost!r}",
            field=f"{field}.addVhostMount",
            fix="write addVhostMount: true or addVhostMount: false (unquoted)",
        )
    rdma = parameters.get("rdma")
    if rdma is not None and not isinstance(rdma, bool):
        raise InvalidVfConfig(
            f"must be a boolean, got {type(rdma).__name__} {rdma!r}",
            field=f"{field}.rdma",
            fix="write rdma: true or rdma: false (unquoted), or leave it out",
        )
    cfg = VfConfig(
        driver=driver,
        ifName=if_name,
        netAttachDefName=nad_name,
        netAttachDefNamespace=nad_namespace,
        addVhostMount=vhost,
        rdma=rdma,
    )
    _refuse_vfio_rdma(cfg, field)
    return cfg


def _refuse_vfio_rdma(cfg: VfConfig, field: str) -> None:
    """``driver: vfio-pci`` with ``rdma: true`` cannot be prepared: refuse it up front."""
    if cfg.driver == "vfio-pci" and cfg.rdma:
        raise InvalidVfConfig(
            "driver vfio-pci and rdma: true cannot be combined: a VF bound to vfio-pci "
            "leaves the kernel's RDMA stack and has no RDMA device to give the pod",
            field=f"{field}.rdma",
            fix="for the VF in userspace (DPDK, a VM) keep driver: vfio-pci and drop rdma; "
            "for RDMA in the pod drop driver: vfio-pci (the kernel driver is kept)",
        )


def effective_vfconfig(
    config_entries: Sequence[Mapping[str, Any]],
    request: str,
    *,
    driver: str,
    field: str = CONFIG_FIELD,
) -> VfConfig:
    """Merge the config entries that apply to ``request`` into one :class:`VfConfig`.

    ``config_entries`` are ``status.allocation.devices.config`` items (``source``,
    ``requests``, ``opaque``) or the same shape built from class and claim config.
    ``FromClass`` entries apply before ``FromClaim`` ones, each in list order.
    Empty ``requests`` means every request; ``request`` may be ``req/sub`` and then
    matches entries naming ``req`` or ``req/sub``. Entries of other drivers are
    skipped. ``field`` prefixes the path in error messages. Raises
    :class:`InvalidVfConfig` for a bad entry, or when the merge combines
    ``driver: vfio-pci`` with ``rdma: true`` (from different entries).
    """
    ordered = sorted(
        enumerate(config_entries),
        key=lambda item: (0 if item[1].get("source", "FromClaim") == "FromClass" else 1, item[0]),
    )
    driver_name = ""
    if_name = ""
    nad_name = ""
    nad_namespace = ""
    vhost = False
    rdma: bool | None = None
    for index, entry in ordered:
        opaque = entry.get("opaque") or {}
        if opaque.get("driver") != driver:
            continue
        if not listed(entry.get("requests") or (), request):
            continue
        parameters = opaque.get("parameters") or {}
        cfg = parse_vfconfig(parameters, field=f"{field}[{index}].opaque.parameters")
        driver_name = cfg.driver or driver_name
        if_name = cfg.if_name or if_name
        nad_name = cfg.net_attach_def_name or nad_name
        nad_namespace = cfg.net_attach_def_namespace or nad_namespace
        if isinstance(parameters, Mapping) and "addVhostMount" in parameters:
            vhost = cfg.add_vhost_mount
        if cfg.rdma is not None:
            rdma = cfg.rdma
    merged = VfConfig(
        driver=driver_name,
        ifName=if_name,
        netAttachDefName=nad_name,
        netAttachDefNamespace=nad_namespace,
        addVhostMount=vhost,
        rdma=rdma,
    )
    _refuse_vfio_rdma(merged, f"{field} (request {request!r}, merged)")
    return merged


def parse_nad_namespaces(value: str) -> frozenset[str]:
    """``--nad-namespaces`` (operator and agent alike): comma-separated, ``"*"`` for any."""
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def nad_reference(
    cfg: VfConfig, *, claim_namespace: str, allowed_namespaces: frozenset[str]
) -> tuple[str, str] | None:
    """``(namespace, name)`` of the NAD ``cfg`` names, or None when it names none.

    The NAD lives in the claim's namespace unless ``netAttachDefNamespace`` says
    otherwise; another namespace must be in ``allowed_namespaces`` (the operator's
    ``--nad-namespaces``; ``"*"`` allows every namespace).
    """
    if not cfg.net_attach_def_name:
        if cfg.net_attach_def_namespace:
            raise InvalidVfConfig(
                f"netAttachDefNamespace {cfg.net_attach_def_namespace!r} is set "
                "but netAttachDefName is empty",
                field="netAttachDefName",
                fix="set netAttachDefName to the NetworkAttachmentDefinition's name, "
                "or remove netAttachDefNamespace",
            )
        return None
    namespace = cfg.net_attach_def_namespace or claim_namespace
    if namespace != claim_namespace and not (
        namespace in allowed_namespaces or "*" in allowed_namespaces
    ):
        raise InvalidVfConfig(
            f"NetworkAttachmentDefinition {namespace}/{cfg.net_attach_def_name} is outside "
            f"the claim's namespace {claim_namespace!r} and namespace {namespace!r} "
            "is not allowed",
            field="netAttachDefNamespace",
            fix=f"create the NAD in namespace {claim_namespace!r}, or start the operator "
            f"and every node agent with --nad-namespaces={namespace}",
        )
    return namespace, cfg.net_attach_def_name


def _numbered(base: str, number: int) -> str:
    suffix = str(number)
    return base[: MAX_IF_NAME - len(suffix)] + suffix


def _next_free(base: str, start: int, taken: set[str]) -> str:
    number = start
    while (name := _numbered(base, number)) in taken:
        number += 1
    if len(name) > MAX_IF_NAME:
        # The number alone outgrew the kernel's limit (ifName 999999999999999, twice).
        return _next_free(DEFAULT_IF_PREFIX, 0, taken)
    return name


def assign_interface_names(devices: Sequence[tuple[str, VfConfig]]) -> list[str]:
    """One distinct pod interface name per allocated device, in result order.

    ``devices`` are ``(request, effective config)`` pairs. Rule:

    1. The first device asking for a given ``ifName`` gets it as is.
    2. A later device asking for the same ``ifName`` gets the next free number: a
       trailing number is incremented (``net1`` -> ``net2``, ``net3``...), otherwise
       one is appended starting at 1 (``data`` -> ``data1``); the base is cut so
       the name stays within 15 bytes (a number that alone is longer gives rule 3).
    3. A device without ``ifName`` gets the lowest free ``vfnet<N>`` (N from 0).

    Names of rule 1 are reserved first, so a generated name never takes a name
    some device asked for explicitly.
    """
    names: list[str | None] = [None] * len(devices)
    taken: set[str] = set(RESERVED_IF_NAMES)
    for index, (_, cfg) in enumerate(devices):
        if cfg.if_name and cfg.if_name not in taken:
            names[index] = cfg.if_name
            taken.add(cfg.if_name)
    for index, (_, cfg) in enumerate(devices):
        if names[index] is not None:
            continue
        if cfg.if_name:
            match = re.fullmatch(r"(.*?)(\d+)", cfg.if_name)
            if match:
                name = _next_free(match.group(1), int(match.group(2)) + 1, taken)
            else:
                name = _next_free(cfg.if_name, 1, taken)
        else:
            name = _next_free(DEFAULT_IF_PREFIX, 0, taken)
        names[index] = name
        taken.add(name)
    return [name for name in names if name is not None]
