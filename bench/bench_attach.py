"""VF attach + detach latency on the simulated NIC, beside the bare calls it is made of.

Builds one simulated node (its own netns names, removed at the end), starts one
pod process in its own netns, and measures over N rounds (default 200), each round
running the three rows below once, in a rotating order, so that load from other
processes weighs on the rows alike:

- attach + detach through ``VfLifecycle`` (record writes, identity lookups, move,
  rename, MAC/MTU, up, host-local ADD, addresses and routes; then DEL, move back,
  restore name/MAC/MTU);
- baselines from the same run: the bare netlink move + rename + up and back (two
  pre-opened pyroute2 sockets, no lookups, no records) and a bare host-local ADD +
  DEL exec; the ratio is against their sum;
- for information, every netlink call an attach + detach makes, bare: also the
  MAC and MTU (set and restored), the address and the route.

Prints p50/p99 per row and each row's p50 as a multiple of the summed baselines.
Needs root and /usr/lib/cni/host-local.

    .venv/bin/python bench/bench_attach.py [--cycles 200]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "node_agent")]

from latency_table import percentile, print_ratio_table  # noqa: E402
from pyroute2 import IPRoute  # noqa: E402
from sriov_dra.claim_ref import ClaimRef  # noqa: E402
from sriov_dra_agent.attach import ipam  # noqa: E402
from sriov_dra_agent.attach.pod_network import PodNetwork  # noqa: E402
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend  # noqa: E402
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic  # noqa: E402
from sriov_dra_agent.vf.lifecycle import VfLifecycle  # noqa: E402


def _netconf(data_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "sriov",
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [[{"subnet": "10.77.0.0/16", "gateway": "10.77.0.1"}]],
            "routes": [{"dst": "10.78.0.0/16"}],
        },
    }


def _interleaved(rounds: int, rows: list[Callable[[int], None]]) -> list[list[float]]:
    """Milliseconds per call of each row, the rows taking turns (after one warm-up each)."""
    for fn in rows:
        fn(-1)
    samples: list[list[float]] = [[] for _ in rows]
    for i in range(rounds):
        for k in range(len(rows)):
            row = (i + k) % len(rows)
            start = time.perf_counter()
            rows[row](i)
            samples[row].append((time.perf_counter() - start) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.access("/usr/lib/cni/host-local", os.X_OK):
        print("needs root and /usr/lib/cni/host-local (run .ci/setup)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-attach-"))
    nic = SimulatedNic("bench", prefix="b" + secrets.token_hex(3), root=work / "sim")
    pod = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
    try:
        nic.build((SimPf("simpf0", 4, 2),))
        while os.stat(f"/proc/{pod.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            time.sleep(0.01)
        pod_ns = f"/proc/{pod.pid}/ns/net"
        backend = SimulatedBackend(nic)
        pods = PodNetwork(backend)
        lifecycle = VfLifecycle(backend, pods, state_dir=work / "state")
        claim = ClaimRef(uid="bench-uid", namespace="bench", name="claim")
        conf = _netconf(work / "ipam")

        def attach_detach(_: int) -> None:
            lifecycle.attach(
                "0000:3b:02.0", claim, "vf", netns=pod_ns, if_name="net1", netconf=conf,
                mac="02:00:00:77:00:01", mtu=1400,
            )  # fmt: skip
            lifecycle.detach("0000:3b:02.0")

        def bare_ipam(i: int) -> None:
            ipam.ipam_add(conf, container=f"c{i}", ifname="net1", netns="/dev/null")
            ipam.ipam_del(conf, container=f"c{i}", ifname="net1")

        with IPRoute(netns=nic.host_ns, flags=0) as host, IPRoute(netns=pod_ns, flags=0) as inpod:
            (index,) = host.link_lookup(ifname="simpf0v1")

            def bare_netlink(_: int) -> None:
                host.link("set", index=index, net_ns_fd=pod_ns)
                inpod.link("set", index=index, ifname="net1")
                inpod.link("set", index=index, state="up")
                inpod.link("set", index=index, state="down")
                inpod.link("set", index=index, ifname="simpf0v1")
                inpod.link("set", index=index, net_ns_fd=nic.host_netns_path)

            (link,) = host.link("get", index=index)
            home_mac, home_mtu = link.get("IFLA_ADDRESS"), link.get("IFLA_MTU")

            def bare_all(_: int) -> None:
                host.link("set", index=index, net_ns_fd=pod_ns)
                inpod.link("set", index=index, ifname="net1", address="02:00:00:77:00:02", mtu=1400)
                inpod.link("set", index=index, state="up")
                inpod.addr("add", index=index, address="10.79.0.2", prefixlen=16)
                inpod.route("add", dst="10.78.0.0/16", gateway="10.79.0.1", oif=index)
                inpod.link("set", index=index, state="down")
                inpod.link("set", index=index, ifname="simpf0v1", address=home_mac, mtu=home_mtu)
                inpod.link("set", index=index, net_ns_fd=nic.host_netns_path)

            full, netlink, cni, every = _interleaved(
                args.cycles, [attach_detach, bare_netlink, bare_ipam, bare_all]
            )
        lifecycle.release("0000:3b:02.0")
        pods.close()
    finally:
        pod.kill()
        pod.wait()
        nic.destroy()
        shutil.rmtree(work, ignore_errors=True)

    baseline = percentile(netlink, 0.5) + percentile(cni, 0.5)
    rows = [
        ("attach + detach (VfLifecycle)", full),
        ("bare netlink move+rename+up and back", netlink),
        ("bare host-local ADD + DEL exec", cni),
        ("bare netlink, every call of the attach", every),
    ]
    print_ratio_table(
        f"{args.cycles} rounds, milliseconds; ratio = p50 / (netlink p50 + IPAM p50)",
        "operation",
        rows,
        baseline,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
