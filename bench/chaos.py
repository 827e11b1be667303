"""The chaos suite on a dev cluster of its own with two real nodes; prints the table.

    flock /tmp/sriov-dra-realnodes.lock .venv/bin/python bench/chaos.py            # 30 claims
    flock /tmp/sriov-dra-realnodes.lock .venv/bin/python bench/chaos.py --full     # 500 claims

As root (real nodes need namespaces). Exits 1 when an invariant was violated or
anything leaked; the workload and faults are in ``tests/chaos/run.py``.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in ("operator", "node_agent", "tests/devcluster", "tests"):
    sys.path.insert(0, str(ROOT / path))

from chaos.run import Chaos, install  # noqa: E402
from sriov_dra_devcluster.cluster import DevCluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--claims", type=int, default=30)
    parser.add_argument("--full", action="store_true", help="500 claims (takes long)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--state-dir", type=Path, help="reuse the cluster kept in this state dir")
    args = parser.parse_args()
    size = 500 if args.full else args.claims
    state_dir = args.state_dir or Path("/var/tmp/sriov-dra") / f"chaos-{secrets.token_hex(3)}"
    cluster = DevCluster(state_dir)
    try:
        cluster.up(nodes=0, real_nodes=2, timeout=300)
        install(cluster)
        tally = Chaos(cluster, seed=args.seed, size=size).run()
    finally:
        if not args.keep:
            cluster.down()
            shutil.rmtree(state_dir, ignore_errors=True)
    print(tally.table(args.seed, size))
    for text in tally.violations:
        print(f"violation: {text}")
    for kind, found in tally.leaks.items():
        print(f"leak: {kind}: {found}")
    return 1 if tally.violations or tally.leaks else 0


if __name__ == "__main__":
    sys.exit(main())
