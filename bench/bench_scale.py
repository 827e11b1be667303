"""The operator at scale: 1,000 nodes of 64 VFs, 10,000 claims of mixed selectors.

Starts its own control-plane-only dev cluster (``--state-dir``), creates ``--nodes``
Node objects and publishes one ResourceSlice per node as the node agent builds it
(two PFs, ``--vfs-per-node`` VFs, the agent's own slice builder), without agents.
Then it creates ``--claims`` static claims cycling through four shapes: one VF on a
named PF, one VF on a named node, two VFs on one PF (``matchAttribute``), and
``firstAvailable`` (two VFs on a named PF, else one anywhere). It prints, each
beside a baseline measured in the same run:

- claims/s (first create sent -> last allocation seen on a watch) against the raw
  create rate of the same claim bodies with a class the operator ignores;
- per-decision allocator time (the operator's own calls, timed by
  ``bench/timed_operator.py``): the last ``--window`` decisions against the
  first ``--window`` after the first (which evaluates every selector cold);
- the operator's peak RSS (``VmHWM``) against the idle operator and against a bare
  ``python`` that imported the operator's modules;
- time from process start to primed (its "state listed" log line) with the full
  state listed, against the same on the cluster before any slice or claim.

    .venv/bin/python bench/bench_scale.py [--nodes 1000] [--claims 10000] [--keep]

Nodes are plain Node objects, not kwok's: kwok would heartbeat 1,000 Nodes and
Leases on the same two cores and skew every rate; the operator only reads names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from bench_operator_claims import gather_limited  # noqa: E402
from sriov_dra.constants import ATTR_NODE_NAME, ATTR_PF_NAME, DRIVER_NAME  # noqa: E402
from sriov_dra_agent.cluster.slices import build_slices  # noqa: E402
from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo  # noqa: E402
from sriov_dra_devcluster.cluster import DevCluster  # noqa: E402

GROUP, VERSION = "resource.k8s.io", "v1"
PFS = ("ens1f0", "ens1f1")
BENCH_LABEL = "sriov-dra-bench"
READY_LINE = b'"message": "state listed"'


def cel_attribute(qualified: str) -> str:
    """``device.attributes["<domain>"].<name>`` for a qualified attribute name."""
    domain, _, name = qualified.partition("/")
    return f'device.attributes["{domain}"].{name}'


def node_name(index: int) -> str:
    return f"scale-node-{index:04d}"


def node_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "scale"}},
    }


def node_slices(name: str, vfs: int) -> list[dict[str, Any]]:
    """The node's slices as the agent publishes them (its builder, two PFs)."""
    per_pf = vfs // len(PFS)
    pfs = []
    for p, pf in enumerate(PFS):
        bus = 0x3B + 2 * p
        pf_pci = f"0000:{bus:02x}:00.0"
        vf_infos = tuple(
            VfInfo(
                pci_address=f"0000:{bus:02x}:{2 + v // 8:02x}.{v % 8}",
                vf_index=v,
                pf_name=pf,
                pf_pci_address=pf_pci,
                vendor="8086",
                device_id="1889",
                pf_device_id="1592",
                driver="iavf",
                netdev=None,
                numa_node=p,
            )
            for v in range(per_pf)
        )
        pfs.append(
            PfInfo(
                name=pf,
                pci_address=pf_pci,
                vendor="8086",
                device_id="1592",
                total_vfs=per_pf,
                num_vfs=per_pf,
                numa_node=p,
                vfs=vf_infos,
            )
        )
    return build_slices(Inventory(node=name, pfs=tuple(pfs)), driver=DRIVER_NAME, generation=0)


def claim_body(index: int, nodes: int, device_class: str = DRIVER_NAME) -> dict[str, Any]:
    """Claim ``index`` of the mix: PF name, node, matchAttribute, firstAvailable in turn."""
    pf = cel_attribute(ATTR_PF_NAME)
    on_pf = f'{pf} == "{PFS[index % 2]}"'
    kind = index % 4
    devices: dict[str, Any]
    if kind == 0:
        devices = {"requests": [exactly("vf", device_class, 1, on_pf)]}
    elif kind == 1:
        # Nodes fill in name order; aim at the last half, which the others leave free.
        node = node_name(nodes - 1 - (index // 4) % max(1, nodes // 2))
        devices = {
            "requests": [
                exactly("vf", device_class, 1, f'{cel_attribute(ATTR_NODE_NAME)} == "{node}"')
            ]
        }
    elif kind == 2:
        devices = {
            "requests": [exactly("vf", device_class, 2)],
            "constraints": [{"matchAttribute": ATTR_PF_NAME}],
        }
    else:
        devices = {
            "requests": [
                {
                    "name": "vf",
                    "firstAvailable": [
                        {"name": "two", "deviceClassName": device_class, "count": 2,
                         "selectors": [{"cel": {"expression": on_pf}}]},
                        {"name": "one", "deviceClassName": device_class, "count": 1},
                    ],
                }
            ]
        }  # fmt: skip
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": f"c-{index:05d}"},
        "spec": {"devices": devices},
    }


def exactly(name: str, device_class: str, count: int, expression: str = "") -> dict[str, Any]:
    request: dict[str, Any] = {"deviceClassName": device_class, "count": count}
    if expression:
        request["selectors"] = [{"cel": {"expression": expression}}]
    return {"name": name, "exactly": request}


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS), in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1)) * 1024


def bare_python_hwm(imports: str) -> tuple[int, float]:
    """(VmHWM bytes, import seconds) of a fresh ``python`` that imported ``imports``."""
    code = (
        "import time, re, pathlib; t = time.perf_counter()\n"
        f"{imports}\n"
        "s = pathlib.Path('/proc/self/status').read_text()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', s).group(1), time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]) * 1024, float(out[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Operator:
    """The operator as a child process (``timed_operator.py``), decisions in a file."""

    def __init__(self, kubeconfig: Path, label: str) -> None:
        self.log = Path(tempfile.mkstemp(prefix=f"bench-scale-{label}-", suffix=".log")[1])
        self.decisions = self.log.with_suffix(".decisions")
        self.metrics_port = free_port()
        env = {**os.environ, "SRIOV_DRA_BENCH_DECISIONS": str(self.decisions)}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable, str(ROOT / "bench" / "timed_operator.py"),
                f"--kubeconfig={kubeconfig}", f"--metrics-port={self.metrics_port}",
                "--health-port=0", "--bind-address=127.0.0.1",
            ],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    async def primed(self, limit_s: float = 300) -> float:
        """Seconds from process start to its "state listed" line."""
        deadline = time.monotonic() + limit_s
        while READY_LINE not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"operator did not prime:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.05)
        return time.perf_counter() - self.started

    def hwm(self) -> int:
        return proc_status(self.proc.pid, "VmHWM")

    def rss(self) -> int:
        return proc_status(self.proc.pid, "VmRSS")

    def metric(self, name: str) -> float:
        """Sum of one metric's samples on /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def wait_metric(self, name: str, done: Callable[[float], bool], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            value = await asyncio.to_thread(self.metric, name)
            if done(value):
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"{name} stuck at {value}; log {self.log}")
            await asyncio.sleep(1)

    def decision_times(self) -> list[float]:
        if not self.decisions.exists():
            return []
        return [float(x) for x in self.decisions.read_text().split()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class RssPeak:
    """Samples VmRSS once a second; VmHWM gives the true peak, this its timeline."""

    operator: Operator
    samples: list[tuple[float, int]]

    async def run(self) -> None:
        while self.operator.proc.poll() is None:
            self.samples.append((time.perf_counter(), self.operator.rss()))
            await asyncio.sleep(1)


async def create_claims(
    objects: Any, ns: str, n: int, nodes: int, device_class: str, concurrency: int
) -> float:
    """Create claims 0..n-1 in ``ns``; returns seconds."""
    start = time.perf_counter()
    await gather_limited(
        concurrency,
        [
            objects.create_namespaced_custom_object(
                GROUP, VERSION, ns, "resourceclaims", claim_body(i, nodes, device_class)
            )
            for i in range(n)
        ],
    )
    return time.perf_counter() - start


async def raw_create_rate(api: client.ApiClient, n: int, nodes: int, concurrency: int) -> float:
    """Claims/s creating the same bodies with a class the operator ignores (then deleted)."""
    objects: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    name = f"floor-{secrets.token_hex(3)}"
    await core.create_namespace({"metadata": {"name": name}})
    await objects.create_cluster_custom_object(
        GROUP, VERSION, "deviceclasses",
        {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": name},
         "spec": {"selectors": [{"cel": {"expression": "device.driver == 'floor.example'"}}]}},
    )  # fmt: skip
    seconds = await create_claims(objects, name, n, nodes, name, concurrency)
    await objects.delete_collection_namespaced_custom_object(GROUP, VERSION, name, "resourceclaims")
    await core.delete_namespace(name)
    await objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", name)
    for _ in range(600):
        listed = await objects.list_namespaced_custom_object(GROUP, VERSION, name, "resourceclaims")
        if not listed["items"]:
            break
        await asyncio.sleep(0.5)
    return n / seconds


async def allocate_all(
    api: client.ApiClient, n: int, nodes: int, concurrency: int
) -> tuple[float, float, int]:
    """(claims/s, create seconds, allocated) for n claims created at once."""
    objects: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    ns = f"scale-{secrets.token_hex(3)}"
    await core.create_namespace({"metadata": {"name": ns}})
    allocated: dict[str, float] = {}
    done = asyncio.Event()

    def seen(body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if (body.get("status") or {}).get("allocation") and name not in allocated:
            allocated[name] = time.perf_counter()
            if len(allocated) == n:
                done.set()

    async def watch_allocations() -> None:
        # The apiserver may end a long watch: relist, then watch on from there.
        version = ""
        while not done.is_set():
            if version:
                listed = await objects.list_namespaced_custom_object(
                    GROUP, VERSION, ns, "resourceclaims"
                )
                for body in listed["items"]:
                    seen(body)
                version = listed["metadata"]["resourceVersion"]
            async with watch.Watch().stream(
                objects.list_namespaced_custom_object, GROUP, VERSION, ns, "resourceclaims",
                timeout_seconds=900, resource_version=version or None,
            ) as stream:  # fmt: skip
                async for event in stream:
                    seen(event["object"])
                    version = event["object"]["metadata"]["resourceVersion"]
                    if done.is_set():
                        return
            version = version or "0"

    watcher = asyncio.create_task(watch_allocations())
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    create_seconds = await create_claims(objects, ns, n, nodes, DRIVER_NAME, concurrency)
    try:
        await asyncio.wait_for(done.wait(), timeout=max(600, n / 5))
    except TimeoutError:
        print(f"only {len(allocated)} of {n} claims allocated in time", file=sys.stderr)
    watcher.cancel()
    end = max(allocated.values(), default=time.perf_counter())
    return len(allocated) / (end - start), create_seconds, len(allocated)


def window_stats(times: list[float], window: int) -> tuple[float, float, float, float, float]:
    """(first decision, start median, start mean, end median, end mean) in seconds."""
    if len(times) < 3:
        raise SystemExit(f"only {len(times)} decisions timed")
    rest = times[1:]
    w = max(1, min(window, len(rest) // 2))
    start, end = rest[:w], rest[-w:]
    return (
        times[0],
        statistics.median(start),
        statistics.fmean(start),
        statistics.median(end),
        statistics.fmean(end),
    )


MB = 1024 * 1024


async def run(args: argparse.Namespace, kubeconfig: Path) -> None:
    await config.load_kube_config(config_file=str(kubeconfig))
    await asyncio.to_thread(
        DevCluster.attach(kubeconfig).kubectl,
        "apply", "-f", str(ROOT / "manifests" / "base" / "deviceclass.yaml"),
    )  # fmt: skip
    names = [node_name(i) for i in range(args.nodes)]
    async with client.ApiClient() as api:
        core: Any = client.CoreV1Api(api)
        objects: Any = client.CustomObjectsApi(api)
        t = time.perf_counter()
        await gather_limited(args.concurrency, [core.create_node(node_body(n)) for n in names])
        print(f"{args.nodes} Nodes created in {time.perf_counter() - t:.1f} s", flush=True)

        bare_hwm, bare_import = bare_python_hwm("pass")
        imports_hwm, imports_s = bare_python_hwm(
            "import sriov_dra_operator.main, sriov_dra_operator.controller"
        )
        raw_n = min(args.claims, args.raw_claims)
        raw_rate = await raw_create_rate(api, raw_n, args.nodes, args.concurrency)
        print(f"raw create: {raw_n} claims at {raw_rate:.1f}/s", flush=True)

        idle = Operator(kubeconfig, "idle")
        try:
            idle_primed = await idle.primed()
            await asyncio.sleep(2)
            idle_hwm = idle.hwm()
            print(f"idle operator primed in {idle_primed:.2f} s", flush=True)

            t = time.perf_counter()
            slices = [s for n in names for s in node_slices(n, args.vfs_per_node)]
            await gather_limited(
                args.concurrency,
                [
                    objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", s)
                    for s in slices
                ],
            )
            slices_created_s = time.perf_counter() - t
            vfs = args.nodes * args.vfs_per_node
            await idle.wait_metric(
                "sriov_dra_operator_vfs_free", lambda v: v >= vfs, limit_s=max(300, args.nodes)
            )
            publish_s = time.perf_counter() - t
            after_slices_hwm = idle.hwm()
            print(
                f"{len(slices)} slices ({vfs} VFs) created in {slices_created_s:.1f} s, "
                f"all seen by the operator after {publish_s:.1f} s",
                flush=True,
            )

            sampler = RssPeak(idle, [])
            sampling = asyncio.create_task(sampler.run())
            rate, create_s, allocated = await allocate_all(
                api, args.claims, args.nodes, args.concurrency
            )
            sampling.cancel()
            busy_hwm = idle.hwm()
            decisions = idle.decision_times()
        finally:
            idle.stop()
        print(f"{allocated} claims allocated at {rate:.1f}/s", flush=True)

        restarted = Operator(kubeconfig, "restart")
        try:
            full_primed = await restarted.primed()
            await asyncio.sleep(1)
            await restarted.wait_metric(
                "sriov_dra_operator_queue_depth", lambda v: v == 0, limit_s=600
            )
            restart_hwm = restarted.hwm()
        finally:
            restarted.stop()

    first, s_med, s_mean, e_med, e_mean = window_stats(decisions, args.window)
    report = {
        "nodes": args.nodes, "vfs": args.nodes * args.vfs_per_node, "slices": len(slices),
        "claims": args.claims, "allocated": allocated, "decisions": len(decisions),
        "claims_per_s": rate, "raw_create_per_s": raw_rate, "create_s": create_s,
        "decision_first_s": first, "decision_start_median_s": s_med,
        "decision_start_mean_s": s_mean, "decision_end_median_s": e_med,
        "decision_end_mean_s": e_mean,
        "hwm_bare_python": bare_hwm, "hwm_imports": imports_hwm, "hwm_idle": idle_hwm,
        "hwm_after_slices": after_slices_hwm, "hwm_peak_run": busy_hwm,
        "hwm_restart": restart_hwm, "rss_samples_max": max(r for _, r in sampler.samples),
        "slices_created_s": slices_created_s, "slices_seen_s": publish_s,
        "primed_idle_s": idle_primed, "primed_full_s": full_primed,
        "import_s": imports_s, "bare_start_s": bare_import,
    }  # fmt: skip
    print_table(report, args)
    print(json.dumps(report))
    print(f"operator logs: {idle.log} {restarted.log}")


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    w = args.window
    print(
        f"\n{r['nodes']} nodes x {args.vfs_per_node} VFs = {r['vfs']} VFs in {r['slices']} "
        f"slices; {r['claims']} claims (PF / node / matchAttribute / firstAvailable), "
        f"{r['allocated']} allocated, {r['decisions']} decisions; "
        f"client concurrency {args.concurrency}\n"
    )
    rows = [
        ("claims/s (create -> allocated)", f"{r['claims_per_s']:.1f}",
         "raw create/s, ignored class", f"{r['raw_create_per_s']:.1f}",
         r["claims_per_s"] / r["raw_create_per_s"]),
        (f"decision, last {w} (median us)", f"{r['decision_end_median_s'] * 1e6:.0f}",
         f"decision, first {w} (median us)", f"{r['decision_start_median_s'] * 1e6:.0f}",
         r["decision_end_median_s"] / r["decision_start_median_s"]),
        (f"decision, last {w} (mean us)", f"{r['decision_end_mean_s'] * 1e6:.0f}",
         f"decision, first {w} (mean us)", f"{r['decision_start_mean_s'] * 1e6:.0f}",
         r["decision_end_mean_s"] / r["decision_start_mean_s"]),
        ("first decision (cold, ms)", f"{r['decision_first_s'] * 1e3:.0f}",
         f"decision, first {w} (mean ms)", f"{r['decision_start_mean_s'] * 1e3:.2f}",
         r["decision_first_s"] / r["decision_start_mean_s"]),
        ("peak RSS, run (VmHWM MB)", f"{r['hwm_peak_run'] / MB:.1f}",
         "idle operator (VmHWM MB)", f"{r['hwm_idle'] / MB:.1f}",
         r["hwm_peak_run"] / r["hwm_idle"]),
        ("peak RSS, run (VmHWM MB)", f"{r['hwm_peak_run'] / MB:.1f}",
         "python + imports (VmHWM MB)", f"{r['hwm_imports'] / MB:.1f}",
         r["hwm_peak_run"] / r["hwm_imports"]),
        ("RSS, slices only (VmHWM MB)", f"{r['hwm_after_slices'] / MB:.1f}",
         "idle operator (VmHWM MB)", f"{r['hwm_idle'] / MB:.1f}",
         r["hwm_after_slices"] / r["hwm_idle"]),
        ("restart: peak RSS (VmHWM MB)", f"{r['hwm_restart'] / MB:.1f}",
         "idle operator (VmHWM MB)", f"{r['hwm_idle'] / MB:.1f}",
         r["hwm_restart"] / r["hwm_idle"]),
        ("start -> primed, full state (s)", f"{r['primed_full_s']:.2f}",
         "start -> primed, empty (s)", f"{r['primed_idle_s']:.2f}",
         r["primed_full_s"] / r["primed_idle_s"]),
    ]  # fmt: skip
    header = f"{'measure':<34} {'value':>9}   {'baseline (same run)':<34} {'value':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for label, value, base_label, base, ratio in rows:
        print(f"{label:<34} {value:>9}   {base_label:<34} {base:>9} {ratio:>7.2f}")
    print(
        f"\nbare python: VmHWM {r['hwm_bare_python'] / MB:.1f} MB; the operator's imports take "
        f"{r['import_s']:.2f} s. Goal: peak RSS under 150 MB "
        f"({'met' if r['hwm_peak_run'] < 150 * MB else 'NOT met'})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--vfs-per-node", type=int, default=64, help="over two PFs")
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--raw-claims", type=int, default=2000, help="claims in the raw baseline")
    parser.add_argument("--window", type=int, default=1000, help="decisions per start/end window")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--state-dir", type=Path, default=Path("/var/tmp/sriov-dra/bench-scale"))
    parser.add_argument("--keep", action="store_true", help="leave the dev cluster running")
    args = parser.parse_args()
    if args.vfs_per_node % len(PFS):
        parser.error(f"--vfs-per-node must split evenly over {len(PFS)} PFs")
    cluster = DevCluster(args.state_dir)
    cluster.up(nodes=1, log=lambda m: print(m, file=sys.stderr))
    try:
        asyncio.run(run(args, cluster.kubeconfig))
    finally:
        if not args.keep:
            cluster.down(log=lambda m: print(m, file=sys.stderr))


if __name__ == "__main__":
    main()
