"""``sriov-dra inventory``: where every VF is, as a kubectl-style table or as JSON.

It reads the API server with the user's kubeconfig, not the operator's page, so it
works while the operator is down, and says so on stderr. It lists the cluster as a
starting operator does (:meth:`.controller.Controller.prime`: slices, classes,
NADs, pods, nodes, claims and the Events the operator posted; nothing is written)
and builds the view from that cache as the page does
(:func:`.inventory_source.cached_inventory`), so ``-o json`` prints what
``/inventory.json`` serves for the same cluster state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import aiohttp
from kubernetes_asyncio import client
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.inventory import Inventory, InventoryPage, InventoryQueryError, select
from sriov_dra_kube.client import load_api_client

from .controller import Controller
from .inventory_source import cached_inventory
from .metrics import OperatorMetrics
from .nodes import may_watch_nodes
from .settings import OperatorSettings

PAGE_HINT = (
    "the operator's page shows the same from its cache: "
    "kubectl port-forward -n sriov-dra deploy/sriov-dra-operator 9090, then http://localhost:9090/"
)
NONE = "<none>"


class ReadFailed(Exception):
    """The cluster could not be read; the message says what and how to fix it."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The subcommand's flags."""
    parser.add_argument("--node", default="", help="show only this node")
    parser.add_argument(
        "-o",
        "--output",
        choices=["wide", "json"],
        default="",
        help="wide: also PCI address, NAD, ifName, MAC and detail; json: the page's "
        "/inventory.json",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", ""),
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--driver", default=DRIVER_NAME, help="DRA driver name (default %(default)s)"
    )


async def read_inventory(api: client.ApiClient, *, driver: str) -> Inventory:
    """Everything the inventory shows, listed from the API server into a fresh cache."""
    controller = Controller(
        OperatorSettings(driver=driver),
        api,
        OperatorMetrics(),
        watch_nodes=await may_watch_nodes(api),
    )
    try:
        await controller.prime()
    except client.ApiException as exc:
        raise ReadFailed(
            f"cannot list what the inventory shows: {exc.status} {exc.reason}; fix: use a "
            "kubeconfig allowed to list resourceslices, deviceclasses, resourceclaims, "
            "network-attachment-definitions and pods in all namespaces"
        ) from exc
    return cached_inventory(controller.cache, controller.reconciler)


async def _read(args: argparse.Namespace) -> tuple[Inventory, str]:
    try:
        api = await load_api_client(args.kubeconfig or None)
    except Exception as exc:  # a missing file, bad YAML, a kubeconfig without a context...
        raise ReadFailed(
            f"cannot load the kubeconfig {args.kubeconfig or '~/.kube/config'!r}: {exc}; "
            "fix: pass --kubeconfig or set KUBECONFIG"
        ) from exc
    host = str(api.configuration.host)
    async with api:
        try:
            return await read_inventory(api, driver=args.driver), host
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ReadFailed(
                f"cannot reach the API server at {host}: {exc}; "
                "fix: check the kubeconfig's server and that the cluster is up"
            ) from exc


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded as kubectl pads them (three spaces apart), empty cells as <none>."""
    cells = [[cell or NONE for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def render_tables(view: InventoryPage, *, wide: bool) -> str:
    """The PF table, the VF table and the waiting claims, as kubectl would print them."""
    pfs: list[list[str]] = [["NODE", "PF", "PCI", "FREE", "TOTAL"]]
    vf_header = ["NODE", "PF", "VF", "STATE", "CLAIM", "POD", "IP"]
    if wide:
        vf_header += ["PCI", "NAD", "IFNAME", "MAC", "DETAIL"]
    vfs: list[list[str]] = [vf_header]
    for node in view.nodes:
        name = node.name + (" (no Node)" if node.node_missing else "")
        if not node.pfs:
            pfs.append([name, "", "", "0", "0"])
        for pf in node.pfs:
            pfs.append([name, pf.name, pf.pci_address, str(pf.free), str(pf.total)])
            for vf in pf.vfs:
                row = [
                    node.name,
                    pf.name,
                    "" if vf.vf_id is None else str(vf.vf_id),
                    vf.state,
                    vf.claim,
                    ",".join(vf.pods),
                    ",".join(vf.ips),
                ]
                if wide:
                    row += [vf.pci_address, vf.nad, vf.if_name, vf.mac, vf.detail]
                vfs.append(row)
    parts = [table(pfs), table(vfs) if len(vfs) > 1 else "No VFs."]
    if view.waiting:
        waiting = [["WAITING CLAIM", "FOR", "LAST EVENT", "MESSAGE"]]
        waiting += [
            [w.claim, w.waits_for, w.reason + (" (Warning)" if w.warning else ""), w.message]
            for w in view.waiting
        ]
        parts.append(table(waiting))
    else:
        parts.append("No claim waits.")
    return "\n\n".join(parts)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``sriov-dra inventory``."""
    try:
        inventory, host = asyncio.run(_read(args))
        view = select(inventory, node=args.node)
    except (ReadFailed, InventoryQueryError) as exc:
        print(f"sriov-dra inventory: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(view.model_dump_json(indent=2))
        return 0
    print(f"Read from the API server at {host} with your kubeconfig; {PAGE_HINT}", file=sys.stderr)
    print(render_tables(view, wide=args.output == "wide"))
    return 0
