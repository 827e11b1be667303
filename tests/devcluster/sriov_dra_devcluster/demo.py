"""``make demo``: the seed scenario ("Static Resource Claim Demo") end to end on this machine.

Starts the dev cluster with two real nodes (kubelet + containerd + runc, each
with a simulated SR-IOV NIC of 4 VFs), installs the driver as users do
(``kubectl apply -k manifests/simulated``: the operator Deployment and the agent
DaemonSet, from the image built here), then walks the seed's Usage section with
real ``kubectl``, ``kubectl exec`` included, printing every command and its
output under a caption, and checking each step. Then, on the same cluster, the Go
driver's own demos, applied unchanged one at a time, checked and deleted
(:class:`UpstreamWalkthrough`), with a summary table. It stops at the first step
that fails (exit 1). ``--keep`` skips the clean-up step, so pod1 and the claim with its
VF stay to explore, leaves everything running and prints the KUBECONFIG;
otherwise everything is torn down at the end.

The steps are methods of :class:`Walkthrough` and :class:`UpstreamWalkthrough`,
which the e2e tests (``tests/e2e/test_seed_scenario.py``,
``tests/e2e/test_upstream_demos.py``) run and assert on as well.

    python -m sriov_dra_devcluster.demo [--keep] [--state-dir DIR]
    python -m sriov_dra_devcluster.demo --down     # stop what --keep left running
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from sriov_dra.errors import SriovDraError

from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.demo_scenario import DemoFailed
from sriov_dra_devcluster.deployment import DriverDeployment
from sriov_dra_devcluster.state_dir import default_state_dir
from sriov_dra_devcluster.upstream_walkthrough import UpstreamWalkthrough
from sriov_dra_devcluster.walkthrough import Walkthrough

# --- the command --------------------------------------------------------------------------


class _Tee:
    """Print to stdout and append to the transcript file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file: TextIO = path.open("w")

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every step passed."""
    parser = argparse.ArgumentParser(prog="python -m sriov_dra_devcluster.demo")
    parser.add_argument("--keep", action="store_true", help="leave everything running at the end")
    parser.add_argument("--down", action="store_true", help="stop what an earlier --keep left")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the demo creates network namespaces and links: run it as root", file=sys.stderr)
        return 2
    cluster = DevCluster(args.state_dir or default_state_dir())
    driver = DriverDeployment(cluster)
    if args.down:
        cluster.down()
        return 0
    print(
        "sriov-dra demo: the seed's static ResourceClaim scenario, then the Go driver's demos,\n"
        "on this machine.\n"
        "(`make setup` builds the Kubernetes and node binaries once, ~15 minutes on 2 cores;\n"
        " the first `devcluster up` builds the images; later runs reuse both caches.)",
        flush=True,
    )
    try:
        print(
            ">> starting the dev cluster (control plane, registry, CoreDNS, 2 real nodes)",
            flush=True,
        )
        cluster.up(nodes=0, real_nodes=2)
    except SriovDraError as exc:
        print(f"demo: start-up failed: {exc.describe()}", file=sys.stderr)
        if not args.keep:
            cluster.down(log=lambda _msg: None)
        return 1
    tee = _Tee(cluster.log_dir / "demo-transcript.txt")
    walk = Walkthrough(cluster, driver, echo=tee)
    upstream = UpstreamWalkthrough(walk)
    code = 0
    started = time.monotonic()
    try:
        for step in [*walk.steps(), upstream.setup, upstream.run_all]:
            if args.keep and step == walk.step7_cleanup:
                tee("")
                tee("(--keep: clean-up skipped; pod1 and static-vf-claim stay to explore)")
                continue
            step()
        tee("")
        tee(f"All steps passed ({time.monotonic() - started:.0f}s after the cluster was up).")
    except DemoFailed as exc:
        tee("")
        tee(f"FAILED: {exc}")
        tee(f"logs: {cluster.log_dir}")
        code = 1
    except KeyboardInterrupt:
        tee("interrupted")
        code = 130
    finally:
        tee.close()
        print(f"(transcript: {tee.path})")
        if args.keep:
            print(
                f"\nEverything is still running. Explore with:\n"
                f"  export KUBECONFIG={cluster.kubeconfig}\n"
                f"  export PATH={cluster.bin_dir}:$PATH\n"
                + (
                    f"Stop it with: python -m sriov_dra_devcluster.demo --down "
                    f"--state-dir {args.state_dir}"
                    if args.state_dir
                    else "Stop it with: make clean-cluster"
                )
            )
        else:
            print(">> tearing down (pods, nodes, simulated NICs, registry, control plane)")
            cluster.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
