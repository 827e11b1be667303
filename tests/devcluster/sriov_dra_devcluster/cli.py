"""``sriov-dra devcluster up | down | status``: the local control plane from a shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sriov_dra.errors import SriovDraError

from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.errors import ComponentFailed
from sriov_dra_devcluster.state_dir import default_state_dir


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Subcommands up/down/status with --state-dir (and --nodes/--timeout for up)."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the cluster keeps its files (default: {default_state_dir()}; "
        "env SRIOV_DRA_STATE_DIR)",
    )
    up = sub.add_parser(
        "up", parents=[common], help="start the control plane and simulated nodes (or reuse them)"
    )
    up.add_argument(
        "--nodes",
        type=int,
        default=2,
        help="real nodes (kubelet + containerd + runc, a simulated SR-IOV NIC each; default 2)",
    )
    up.add_argument(
        "--kwok-nodes",
        type=int,
        default=0,
        help="kwok nodes: Ready but run no pods, for tests that need many nodes (default 0)",
    )
    up.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for readiness (default 180)"
    )
    sub.add_parser("down", parents=[common], help="stop everything and delete the state")
    sub.add_parser("status", parents=[common], help="show what runs")


def run(args: argparse.Namespace) -> int:
    """Carry out the chosen action; 0 on success, 1 on failure (status: 3 when not running)."""
    cluster = DevCluster(args.state_dir)
    try:
        if args.action == "up":
            if args.nodes < 0 or args.kwok_nodes < 0 or args.nodes + args.kwok_nodes < 1:
                print("sriov-dra devcluster: want at least one node", file=sys.stderr)
                return 2
            cluster.up(nodes=args.kwok_nodes, real_nodes=args.nodes, timeout=args.timeout, log=_err)
            names = cluster.real_node_names + cluster.node_names
            print(f"nodes: {', '.join(names)}", file=sys.stderr)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            return 0
        if args.action == "down":
            cluster.down(log=_err)
            return 0
        status = cluster.status()
        print(status.render())
        return 0 if status.running else 3
    except SriovDraError as exc:
        text = exc.describe() if isinstance(exc, ComponentFailed) else str(exc)
        print(f"sriov-dra devcluster {args.action}: {text}", file=sys.stderr)
        return 1


def _err(message: str) -> None:
    print(message, file=sys.stderr)
