"""The ``sriov-dra`` command: one console script, one subcommand per process.

Each subcommand lives in its own module exposing ``configure_parser(parser)``
and ``run(args) -> int``. Only the chosen module is imported, so the OCI hook
does not pay for importing kopf and the operator does not import pyroute2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Final

SUBCOMMANDS: Final[dict[str, tuple[str, str]]] = {
    "operator": ("sriov_dra_operator.main", "run the cluster operator (allocates static claims)"),
    "agent": ("sriov_dra_agent.main", "run the node agent (slices, kubelet plugin, VF attach)"),
    "hook": ("sriov_dra_agent.hook", "OCI createRuntime hook: attach a claim's VFs to a pod"),
    "devcluster": (
        "sriov_dra_devcluster.cli",
        "start/stop a local Kubernetes 1.34 control plane with simulated nodes",
    ),
    "node-emulator": (
        "sriov_dra_devcluster.node_emulator",
        "play kubelet and container runtime for pods on simulated nodes (dev cluster only)",
    ),
}


def _usage() -> str:
    lines = ["usage: sriov-dra <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand named by the first argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name = args[0]
    if name not in SUBCOMMANDS:
        print(f"sriov-dra: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"sriov-dra {name}", description=help_)
    module.configure_parser(parser)
    parsed = parser.parse_args(args[1:])
    result: int = module.run(parsed)
    return result


if __name__ == "__main__":
    sys.exit(main())
