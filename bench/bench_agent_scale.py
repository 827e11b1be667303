"""One node agent with 256 simulated VFs: slices published, peak RSS, time to publish.

Starts its own control-plane-only dev cluster (``--state-dir``), then for two NIC
sizes in turn, the small one first as the baseline of the same run: a Node object,
a simulated SR-IOV NIC of PFs of up to 64 VFs (real veth pairs and namespaces,
:mod:`sriov_dra_agent.vf.backends.simulated_nic`) and ``sriov-dra agent`` as a
process on it. A watch on the node's ResourceSlices gives the time from the
agent's process start to its first slice and to the whole pool. Printed beside
the baselines: slices and devices, the agent's VmHWM against the small agent and
against a bare ``python`` that imported the agent's modules, and the times against
the small agent's.

    .venv/bin/python bench/bench_agent_scale.py [--vfs 256] [--baseline-vfs 8] [--keep]

As root (network namespaces). Everything made is removed again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from agent_harness import AgentProcess  # noqa: E402
from bench_scale import MB, bare_python_hwm, proc_status  # noqa: E402
from sriov_dra.constants import DRIVER_NAME  # noqa: E402
from sriov_dra_agent.vf.backends.simulated_nic import MAX_VFS, SimPf, SimulatedNic  # noqa: E402
from sriov_dra_devcluster.cluster import DevCluster  # noqa: E402

GROUP, VERSION = "resource.k8s.io", "v1"


@dataclass
class Result:
    vfs: int
    pfs: int
    nic_build_s: float
    first_slice_s: float
    all_slices_s: float
    slices: int
    devices: int
    hwm: int


def sim_pfs(vfs: int) -> list[SimPf]:
    """``vfs`` VFs on PFs of at most MAX_VFS each."""
    pfs = []
    for index, start in enumerate(range(0, vfs, MAX_VFS)):
        count = min(MAX_VFS, vfs - start)
        pfs.append(SimPf(f"simpf{index}", total_vfs=count, num_vfs=count, numa_node=index % 2))
    return pfs


async def watch_pool(api: client.ApiClient, node: str, started: list[float]) -> tuple[float, float]:
    """(seconds to the first slice, seconds to the whole pool) of ``node``, from started[0]."""
    objects: Any = client.CustomObjectsApi(api)
    seen: dict[str, int] = {}
    first = 0.0
    async with watch.Watch().stream(
        objects.list_cluster_custom_object, GROUP, VERSION, "resourceslices",
        field_selector=f"spec.nodeName={node}", timeout_seconds=600,
    ) as stream:  # fmt: skip
        async for event in stream:
            body = event["object"]
            if event["type"] == "DELETED" or body["spec"]["driver"] != DRIVER_NAME:
                continue
            now = time.perf_counter()
            first = first or now
            pool = body["spec"]["pool"]
            seen[body["metadata"]["name"]] = int(pool["generation"])
            newest = max(seen.values())
            if sum(1 for g in seen.values() if g == newest) == pool["resourceSliceCount"]:
                return first - started[0], now - started[0]
    raise SystemExit(f"the pool of {node} was not published within 600 s")


async def one_agent(api: client.ApiClient, cluster: DevCluster, vfs: int) -> Result:
    core: Any = client.CoreV1Api(api)
    objects: Any = client.CustomObjectsApi(api)
    node = f"agent-scale-{vfs}-{secrets.token_hex(2)}"
    await core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    nic = SimulatedNic(node, prefix="as" + secrets.token_hex(2))
    root = Path(tempfile.mkdtemp(prefix="agent-scale-", dir="/tmp"))
    agent = AgentProcess(node=node, sim_prefix=nic.prefix, kubeconfig=cluster.kubeconfig, root=root)
    try:
        pfs = sim_pfs(vfs)
        t = time.perf_counter()
        await asyncio.to_thread(nic.build, pfs)
        nic_build_s = time.perf_counter() - t
        started = [0.0]
        watcher = asyncio.create_task(watch_pool(api, node, started))
        await asyncio.sleep(0.5)  # the watch is open before the agent starts
        started[0] = time.perf_counter()
        await asyncio.to_thread(agent.start)
        first_s, all_s = await watcher
        await asyncio.sleep(3)  # let it settle after publishing
        assert agent.proc is not None
        hwm = proc_status(agent.proc.pid, "VmHWM")
        listed = await objects.list_cluster_custom_object(
            GROUP, VERSION, "resourceslices", field_selector=f"spec.nodeName={node}"
        )
        slices = [s for s in listed["items"] if s["spec"]["driver"] == DRIVER_NAME]
        devices = sum(len(s["spec"].get("devices") or []) for s in slices)
        return Result(vfs, len(pfs), nic_build_s, first_s, all_s, len(slices), devices, hwm)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.terminate()
        await asyncio.to_thread(nic.destroy)
        await core.delete_node(node)
        left = await objects.list_cluster_custom_object(
            GROUP, VERSION, "resourceslices", field_selector=f"spec.nodeName={node}"
        )
        for item in left["items"]:
            await objects.delete_cluster_custom_object(
                GROUP, VERSION, "resourceslices", item["metadata"]["name"]
            )
        shutil.rmtree(root, ignore_errors=True)


async def run(args: argparse.Namespace, cluster: DevCluster) -> None:
    await asyncio.to_thread(cluster.kubectl, "apply", "-f", str(ROOT / "crds"))
    await config.load_kube_config(config_file=str(cluster.kubeconfig))
    bare_hwm, _ = bare_python_hwm("pass")
    imports_hwm, imports_s = bare_python_hwm("import sriov_dra_agent.main")
    async with client.ApiClient() as api:
        small = await one_agent(api, cluster, args.baseline_vfs)
        big = await one_agent(api, cluster, args.vfs)
    print(
        f"\nagent on a simulated NIC: {big.vfs} VFs on {big.pfs} PFs (NIC built in "
        f"{big.nic_build_s:.1f} s) beside {small.vfs} VFs on {small.pfs} PF in the same run\n"
    )
    rows = [
        ("slices published", f"{big.slices}", f"{small.slices}", big.slices / small.slices),
        ("devices published", f"{big.devices}", f"{small.devices}", big.devices / small.devices),
        ("start -> first slice (s)", f"{big.first_slice_s:.2f}", f"{small.first_slice_s:.2f}",
         big.first_slice_s / small.first_slice_s),
        ("start -> whole pool (s)", f"{big.all_slices_s:.2f}", f"{small.all_slices_s:.2f}",
         big.all_slices_s / small.all_slices_s),
        ("peak RSS (VmHWM MB)", f"{big.hwm / MB:.1f}", f"{small.hwm / MB:.1f}",
         big.hwm / small.hwm),
        ("peak RSS vs python + imports", f"{big.hwm / MB:.1f}", f"{imports_hwm / MB:.1f}",
         big.hwm / imports_hwm),
    ]  # fmt: skip
    header = f"{'measure':<30} {f'{big.vfs} VFs':>10} {'baseline':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for label, value, base, ratio in rows:
        print(f"{label:<30} {value:>10} {base:>10} {ratio:>7.2f}")
    print(
        f"\nbaseline of the last row: a bare python that imported sriov_dra_agent.main "
        f"({imports_s:.2f} s); python alone: VmHWM {bare_hwm / MB:.1f} MB"
    )
    print(json.dumps({"big": big.__dict__, "small": small.__dict__, "hwm_imports": imports_hwm}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vfs", type=int, default=256)
    parser.add_argument("--baseline-vfs", type=int, default=8)
    parser.add_argument(
        "--state-dir", type=Path, default=Path("/var/tmp/sriov-dra/bench-agent-scale")
    )
    parser.add_argument("--keep", action="store_true", help="leave the dev cluster running")
    args = parser.parse_args()
    cluster = DevCluster(args.state_dir)
    cluster.up(nodes=1, log=lambda m: print(m, file=sys.stderr))
    try:
        asyncio.run(run(args, cluster))
    finally:
        if not args.keep:
            cluster.down(log=lambda m: print(m, file=sys.stderr))


if __name__ == "__main__":
    main()
