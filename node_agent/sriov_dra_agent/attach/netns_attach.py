"""Move a VF netdev into a pod's netns and back: pure step plans, thin netlink.

A VF netdev is recognised by identity, never by name alone: the backend tells
(:meth:`~sriov_dra_agent.vf.backends.base.VfBackend.is_vf_netdev`: a real VF by its
parent device, a simulated one by its alias), and every function here takes that
test as ``is_vf``. Each function looks first, then plans only the steps
still missing (:func:`plan_into_pod`, :func:`plan_back_to_host`), so any of them
can be re-run after a crash at any point.

The functions take open sockets: one pod socket serves every step of an attach or
a detach. A dump decodes every link of the netns (hundreds on a busy node), so a VF
is first looked for where it should be (:func:`lookup_vf`): by its expected name, or
by its index, which the kernel keeps across a move unless the target netns has it
taken; only a miss dumps.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from sriov_dra.errors import AttachError, DeviceBusy

from sriov_dra_agent.attach.ipam import IpamResult
from sriov_dra_agent.attach.netns import host_netns_path

IFF_UP: Final = 1

IsVfNetdev = Callable[[Any, str], bool]
"""Whether a netlink link message is VF ``pci``'s netdev (the backend's
:meth:`~sriov_dra_agent.vf.backends.base.VfBackend.is_vf_netdev`)."""

BeforeChange = Callable[[], None]
"""Called before each netlink change (not before lookups): the caller's write-ahead
record may still be on its way to disk while the functions look. Idempotent."""


def no_wait() -> None:
    """A :data:`BeforeChange` for callers whose record is already written."""


@dataclass(frozen=True)
class LinkView:
    """What we need to know about one netdev."""

    index: int
    name: str
    mac: str
    mtu: int
    up: bool


@dataclass(frozen=True)
class Step:
    """One netlink action: ``down``, ``move``, ``rename``, ``mac``, ``mtu``, ``up``."""

    action: str
    value: str | int | None = None


def _view(link: Any) -> LinkView:
    return LinkView(
        index=int(link["index"]),
        name=str(link.get("IFLA_IFNAME")),
        mac=str(link.get("IFLA_ADDRESS") or "").lower(),
        mtu=int(link.get("IFLA_MTU") or 0),
        up=bool(link["flags"] & IFF_UP),
    )


def find_vf(ipr: IPRoute, pci: str, is_vf: IsVfNetdev) -> LinkView | None:
    """The VF ``pci``'s netdev in ``ipr``'s netns, if it is there."""
    for link in ipr.link("dump"):
        if is_vf(link, pci):
            return _view(link)
    return None


def lookup_vf(ipr: IPRoute, pci: str, is_vf: IsVfNetdev, hint: int | str | None) -> LinkView | None:
    """The VF ``pci``'s netdev in ``ipr``'s netns, tried first at ``hint`` (an index or
    a name where it should be); no hint, or a link there that is not the VF, or none,
    falls back to a dump."""
    if hint is None:
        return find_vf(ipr, pci, is_vf)
    key = "index" if isinstance(hint, int) else "ifname"
    try:
        (link,) = ipr.link("get", **{key: hint})
    except NetlinkError:
        return find_vf(ipr, pci, is_vf)
    return _view(link) if is_vf(link, pci) else find_vf(ipr, pci, is_vf)


def find_name(ipr: IPRoute, name: str) -> LinkView | None:
    found = ipr.link_lookup(ifname=name)
    if not found:
        return None
    (link,) = ipr.link("get", index=found[0])
    return _view(link)


def plan_into_pod(
    in_host: LinkView | None,
    in_pod: LinkView | None,
    *,
    if_name: str,
    mac: str | None,
    mtu: int | None,
    name_taken: bool,
) -> list[Step]:
    """Steps that bring the VF into the pod named ``if_name``, with ``mac``/``mtu``, up.

    ``in_host``/``in_pod``: where the VF is now; ``name_taken``: another link in the
    pod already has ``if_name``. Rename only while down (many drivers refuse
    renaming an up link). Raises :class:`AttachError` when the VF is nowhere or the
    name belongs to something else.
    """
    if in_pod is None and in_host is None:
        raise AttachError(
            "VF netdev is neither in the host netns nor in the pod",
            field="vf",
            fix="check the VF is bound to a network driver; the agent repairs it on its sweep",
        )
    if name_taken:
        raise DeviceBusy(
            f"interface name {if_name} is already used in the pod",
            field="ifName",
            fix="give each VF of the pod a distinct ifName in the VfConfig",
        )
    steps: list[Step] = []
    current = in_pod
    if current is None:
        assert in_host is not None
        if in_host.up:
            steps.append(Step("down"))
        steps.append(Step("move"))
        current = LinkView(in_host.index, in_host.name, in_host.mac, in_host.mtu, up=False)
    if current.name != if_name:
        if current.up:
            steps.append(Step("down"))
        steps.append(Step("rename", if_name))
    if mac is not None and current.mac != mac.lower():
        steps.append(Step("mac", mac.lower()))
    if mtu is not None and current.mtu != mtu:
        steps.append(Step("mtu", mtu))
    if not current.up or current.name != if_name:
        steps.append(Step("up"))
    return steps


def plan_back_to_host(
    link: LinkView, *, in_pod: bool, host_name: str, host_mac: str | None, host_mtu: int | None
) -> list[Step]:
    """Steps that return the VF to the host netns down, named, addressed as before."""
    steps: list[Step] = []
    if link.up:
        steps.append(Step("down"))
    if link.name != host_name:
        steps.append(Step("rename", host_name))
    if host_mac is not None and link.mac != host_mac:
        steps.append(Step("mac", host_mac))
    if host_mtu is not None and link.mtu != host_mtu:
        steps.append(Step("mtu", host_mtu))
    if in_pod:
        steps.append(Step("move"))
    return steps


_ATTRIBUTES: Final = {"rename": "ifname", "mac": "address", "mtu": "mtu"}
"""Steps that set one link attribute; consecutive ones go in one netlink request."""


def _set(ipr: IPRoute, index: int, attributes: dict[str, Any]) -> None:
    if attributes:
        ipr.link("set", index=index, **attributes)


def _run(
    ipr: IPRoute, index: int, steps: Sequence[Step], *, move_to: str, before: BeforeChange
) -> None:
    if steps:
        before()
    attributes: dict[str, Any] = {}
    for step in steps:
        if step.action in _ATTRIBUTES:
            attributes[_ATTRIBUTES[step.action]] = step.value
            continue
        _set(ipr, index, attributes)
        attributes = {}
        if step.action == "down":
            ipr.link("set", index=index, state="down")
        elif step.action == "up":
            ipr.link("set", index=index, state="up")
        elif step.action == "move":
            ipr.link("set", index=index, net_ns_fd=move_to)
    _set(ipr, index, attributes)


def _netlink_error(what: str, exc: NetlinkError) -> AttachError:
    return AttachError(f"{what}: {exc}", field="vf", fix="see the agent log; the sweep retries")


def move_into_pod(
    pod: IPRoute,
    host: IPRoute,
    *,
    pci: str,
    is_vf: IsVfNetdev,
    pod_netns: str,
    if_name: str,
    mac: str | None = None,
    mtu: int | None = None,
    host_name: str | None = None,
    before_change: BeforeChange = no_wait,
) -> LinkView:
    """Ensure VF ``pci`` is in ``pod_netns`` (socket ``pod``) as ``if_name``, with
    ``mac``/``mtu``, up; ``host`` is a socket in the host netns, where the VF is
    expected as ``host_name`` (if known).

    Idempotent: a VF already there is only completed. Raises :class:`DeviceBusy`
    (name taken), :class:`AttachError`.
    """
    in_host = lookup_vf(host, pci, is_vf, host_name)
    # A netdev is in one netns only: found in the host, it is not in the pod.
    in_pod = find_vf(pod, pci, is_vf) if in_host is None else None
    holder = find_name(pod, if_name)
    if in_pod is None:
        steps = plan_into_pod(
            in_host, None, if_name=if_name, mac=mac, mtu=mtu, name_taken=holder is not None
        )
        assert in_host is not None
        try:
            moving = steps[: steps.index(Step("move")) + 1]
            _run(host, in_host.index, moving, move_to=pod_netns, before=before_change)
        except NetlinkError as exc:
            raise _netlink_error(f"moving VF {pci} into {pod_netns}", exc) from exc
        in_pod = lookup_vf(pod, pci, is_vf, in_host.index)
        if in_pod is None:
            raise AttachError(
                f"VF {pci} vanished while moving into {pod_netns}",
                field="vf",
                fix="the pod netns may have died; the runtime retries",
            )
    # The name was free before the move; a link taking it since makes the rename fail.
    steps = plan_into_pod(
        None,
        in_pod,
        if_name=if_name,
        mac=mac,
        mtu=mtu,
        name_taken=holder is not None and holder.index != in_pod.index,
    )
    try:
        _run(pod, in_pod.index, steps, move_to=pod_netns, before=before_change)
    except NetlinkError as exc:
        raise _netlink_error(f"configuring VF {pci} as {if_name} in {pod_netns}", exc) from exc
    # The kernel took every step: the VF is now as they made it.
    return LinkView(
        index=in_pod.index,
        name=if_name,
        mac=mac.lower() if mac is not None else in_pod.mac,
        mtu=mtu if mtu is not None else in_pod.mtu,
        up=True,
    )


def _gateway_for(address: str, result: IpamResult) -> str | None:
    version = ipaddress.ip_interface(address).version
    for ip in result.ips:
        if ip.gateway and ipaddress.ip_address(ip.gateway).version == version:
            return ip.gateway
    return None


def configure_addresses(
    pod: IPRoute,
    *,
    pod_netns: str,
    pci: str,
    is_vf: IsVfNetdev,
    result: IpamResult,
    link: LinkView | None = None,
) -> list[str]:
    """Add the IPAM addresses and routes to the VF in the pod (socket ``pod``), missing
    ones only; ``link`` is the VF there if the caller has just found it.

    Returns the addresses as CIDR strings. A route without ``gw`` goes via the
    gateway of its family, as CNI's ConfigureIface does.
    """
    link = link or find_vf(pod, pci, is_vf)
    if link is None:
        raise AttachError(f"VF {pci} is not in {pod_netns}", field="vf", fix="re-run the attach")
    cidrs = []
    try:
        for ip in result.ips:
            iface = ipaddress.ip_interface(ip.address)
            cidrs.append(f"{iface.ip}/{iface.network.prefixlen}")
            try:
                pod.addr(
                    "add",
                    index=link.index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                )
            except NetlinkError as exc:
                # EEXIST on a re-run: the address is already there (no dump to look first).
                if exc.code != errno.EEXIST:
                    raise
        for route in result.routes:
            net = ipaddress.ip_network(route.dst, strict=False)
            gateway = route.gw or _gateway_for(f"{net.network_address}/{net.prefixlen}", result)
            spec: dict[str, Any] = {"dst": str(net), "oif": link.index}
            if gateway:
                spec["gateway"] = gateway
            with contextlib.suppress(NetlinkError):
                # EEXIST on a re-run: the route is already there.
                pod.route("add", **spec)
    except NetlinkError as exc:
        raise _netlink_error(f"adding addresses to VF {pci} in {pod_netns}", exc) from exc
    return cidrs


def move_to_host(
    host: IPRoute,
    pod: IPRoute | None,
    *,
    pci: str,
    is_vf: IsVfNetdev,
    host_netns: str | None,
    pod_netns: str | None,
    host_name: str,
    host_mac: str | None,
    host_mtu: int | None,
    pod_name: str | None = None,
    before_change: BeforeChange = no_wait,
) -> LinkView | None:
    """Ensure VF ``pci`` is in the host netns (socket ``host``), down, named ``host_name``
    with its MAC/MTU.

    ``pod`` is a socket in the pod netns ``pod_netns``, where the VF is expected as
    ``pod_name`` (if known); ``None`` (the netns is gone)
    means look only in the host (a real VF returns there when its netns dies, still
    carrying the pod's name). Returns the VF's link in the host, or ``None`` when it
    is in neither (a simulated VF destroyed with its netns, or a real one whose
    netns is still held elsewhere).
    """
    target = host_netns_path(host_netns)
    moved: int | None = None
    if pod is not None:
        link = lookup_vf(pod, pci, is_vf, pod_name)
        if link is not None:
            moved = link.index
            steps = plan_back_to_host(
                link, in_pod=True, host_name=host_name, host_mac=host_mac, host_mtu=host_mtu
            )
            # No address flush: the kernel drops a netdev's addresses when it changes netns.
            try:
                _run(pod, link.index, steps, move_to=target, before=before_change)
            except NetlinkError as exc:
                raise _netlink_error(f"moving VF {pci} back from {pod_netns}", exc) from exc
    link = lookup_vf(host, pci, is_vf, moved)
    if link is None:
        return None
    if link.name != host_name and find_name(host, host_name) is not None:
        raise DeviceBusy(
            f"cannot rename VF {pci} back to {host_name}: the name is taken by another link",
            field="vf",
            fix=f"rename or remove the other {host_name} in the host netns",
        )
    steps = plan_back_to_host(
        link, in_pod=False, host_name=host_name, host_mac=host_mac, host_mtu=host_mtu
    )
    if not steps:
        return link
    try:
        _run(host, link.index, steps, move_to=target, before=before_change)
    except NetlinkError as exc:
        raise _netlink_error(f"restoring VF {pci} in the host netns", exc) from exc
    return lookup_vf(host, pci, is_vf, link.index)
