"""The ``sriov-dra`` command: one console script, one subcommand per process.

Each subcommand lives in its own module exposing ``configure_parser(parser)``
and ``run(args) -> int``. Only the chosen module is imported, so the OCI hook
does not pay for importing kopf and the operator does not import pyroute2.

The product's commands are listed here. Others come from installed
distributions through the ``sriov_dra.commands`` entry points: the dev cluster
(``tests/devcluster``, a source checkout's test world, never in the wheel or
the image) adds ``devcluster`` and ``node-emulator`` that way.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Final

SUBCOMMANDS: Final[dict[str, tuple[str, str]]] = {
    "operator": ("sriov_dra_operator.main", "run the cluster operator (allocates static claims)"),
    "agent": ("sriov_dra_agent.main", "run the node agent (slices, kubelet plugin, VF attach)"),
    "hook": (
        "sriov_dra_agent.attach.hook",
        "OCI createRuntime hook: attach a claim's VFs to a pod",
    ),
    "inventory": (
        "sriov_dra_operator.inventory_command",
        "where every VF is: nodes, PFs, VFs, claims, pods, IPs (read from the API server)",
    ),
}
PLUGIN_GROUP: Final = "sriov_dra.commands"


def commands() -> dict[str, tuple[str, str]]:
    """The product's subcommands plus those installed distributions add (name: module, help)."""
    # Imported here, off the hook's path (see main).
    from importlib.metadata import entry_points

    found = dict(SUBCOMMANDS)
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name not in found:
            origin = entry.dist.name if entry.dist else entry.module
            found[entry.name] = (entry.module, f"(from {origin}; see its --help)")
    return found


def _usage(available: dict[str, tuple[str, str]]) -> str:
    lines = ["usage: sriov-dra <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in available.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand named by the first argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = args[0] if args else ""
    # A product command skips the entry-point scan: importing importlib.metadata and
    # reading every installed distribution's metadata is ~30 ms, and the OCI hook
    # pays it on every container start.
    if name in SUBCOMMANDS:
        module_name, help_ = SUBCOMMANDS[name]
    else:
        available = commands()
        if not args or name in ("-h", "--help"):
            print(_usage(available))
            return 0 if args else 2
        if name not in available:
            print(f"sriov-dra: unknown command {name!r}\n\n{_usage(available)}", file=sys.stderr)
            return 2
        module_name, help_ = available[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"sriov-dra {name}", description=help_)
    module.configure_parser(parser)
    parsed = parser.parse_args(args[1:])
    result: int = module.run(parsed)
    return result


if __name__ == "__main__":
    sys.exit(main())
