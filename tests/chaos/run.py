"""A seeded, bounded chaos run on a dev cluster with real nodes and the driver installed.

Workload: N claims in random order (``random.Random(seed)``), by a few workers at once:
each claim is created, used by a pod (kubelet prepare, the agent attaches the VF), the
pod deleted, the claim deleted, created again under the same name, used by a pod again
or not, deleted again. Meanwhile a fault thread injects, spaced out at seeded
intervals: operator SIGKILLs (the leader; one of them the moment a claim shows the
operator's allocation annotation but no ``status.allocation`` yet, between its metadata
write and its status write), agent SIGKILLs during prepare, attach and release,
kube-apiserver and etcd restarts (data kept), a containerd restart, and the NAD deleted
and created again while pods hold its VFs.

Invariants (see :mod:`chaos.invariants`): no device in two claims' allocations, watched
all along; every claim allocated, or warned with a reason, within ``CONVERGE_BOUND``;
after the run nothing left (VF state, leases, pod netns, finalizers).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from sriov_dra import allocation_record
from sriov_dra.constants import ALLOCATION_ANNOTATION, DEVICE_CLASS_NAME, DRIVER_NAME
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.components import APISERVER, ETCD
from sriov_dra_devcluster.deployment import DriverDeployment
from sriov_dra_devcluster.errors import KubectlFailed
from sriov_dra_devcluster.walkthrough import Walkthrough

from chaos import faults
from chaos.invariants import ClaimWatch, allocated_devices, leftovers, pod_netns, vf_states

NAMESPACE: Final = "chaos"
NETWORK: Final = "chaos-net"
CONVERGE_BOUND: Final = 120.0
"""Seconds from a claim's create to its allocation or a Warning naming why."""
BACKOFF_CAP: Final = 300.0
"""The kubelet's CrashLoopBackOff cap: an agent the faults killed many times in ten
minutes waits up to this long before its next start, and its node's pods wait with it."""
ALLOCATION_BOUND: Final = BACKOFF_CAP + faults.AGENT_SETTLE + 120.0
"""Seconds a warned claim may still wait for a VF (freed by an agent, which may be in
back-off) before the run gives it up."""
POD_BOUND: Final = BACKOFF_CAP + faults.AGENT_SETTLE + 120.0
"""Seconds for a pod to run and for a deleted pod or claim to be gone, faults included:
one full kubelet back-off of the node's agent, the agent's settle time (the next fault
on it may come right after) and a start under load."""
IMAGE: Final = "quay.io/schseba/toolbox:latest"
AGENT_STOP: Final = 50.0
"""Seconds an agent is stopped: beyond the operator's 15 s lease and the kubelet's
liveness probe (3 misses 10 s apart, 5 s timeout each), which restarts it; deleted
claims on its node must wait."""
WORKERS: Final = 8
"""As many claims in flight as the two real nodes have VFs."""


def nad() -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": NETWORK, "namespace": NAMESPACE},
        "spec": {
            "config": json.dumps({
                "cniVersion": "1.0.0", "name": NETWORK, "type": "sriov", "spoofchk": "on",
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.9.0/24"}]]},
            })
        },
    }  # fmt: skip


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"devices": {
            "requests": [{"name": "vf", "exactly": {"deviceClassName": DEVICE_CLASS_NAME}}],
            "config": [{"requests": ["vf"], "opaque": {"driver": DRIVER_NAME, "parameters": {
                "apiVersion": f"{DRIVER_NAME}/v1alpha1", "kind": "VfConfig",
                "ifName": "net1", "netAttachDefName": NETWORK,
            }}}],
        }},
    }  # fmt: skip


def pod(name: str, claim_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "ctr", "image": IMAGE, "command": ["sleep", "infinity"],
                "resources": {"claims": [{"name": "vf"}]},
            }],
            "resourceClaims": [{"name": "vf", "resourceClaimName": claim_name}],
        },
    }  # fmt: skip


@dataclass
class Tally:
    """What the run did and saw; the table is printed from it."""

    faults: Counter[str] = field(default_factory=Counter)
    churned: int = 0
    pods: int = 0
    warned_only: int = 0
    convergence: list[float] = field(default_factory=list)
    failover: list[float] = field(default_factory=list)
    window_hits: int = 0
    violations: list[str] = field(default_factory=list)
    leaks: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)
        print(f"VIOLATION: {text}", flush=True)

    def table(self, seed: int, size: int) -> str:
        conv = sorted(self.convergence)

        def pct(values: list[float], q: float) -> str:
            return f"{values[min(len(values) - 1, int(q * len(values)))]:.1f} s" if values else "-"

        rows = [(f"fault: {k}", str(v)) for k, v in sorted(self.faults.items())]
        rows += [
            ("claims churned (create+delete)", str(self.churned)),
            ("pods run on a claim", str(self.pods)),
            ("claims warned, never allocated", str(self.warned_only)),
            ("metadata/status window hit", f"{self.window_hits}"),
            ("invariant violations", str(len(self.violations))),
            ("leaks after the run", str(sum(len(v) for v in self.leaks.values()))),
            (f"convergence p50 (bound {CONVERGE_BOUND:.0f} s)", pct(conv, 0.5)),
            ("convergence p99", pct(conv, 0.99)),
            ("operator failover (max)", f"{max(self.failover):.1f} s" if self.failover else "-"),
            ("operator failover (each)",
             ", ".join(f"{f:.1f}" for f in self.failover) or "-"),
            ("wall time", f"{self.seconds:.0f} s"),
        ]  # fmt: skip
        width = max(len(r[0]) for r in rows)
        head = f"chaos run: seed {seed}, {size} claims"
        return "\n".join([head, "-" * len(head), *(f"{k:<{width}}  {v}" for k, v in rows)])


class Chaos:
    """One run: workload workers, a fault thread and the claim watch."""

    def __init__(self, cluster: DevCluster, *, seed: int, size: int) -> None:
        self.cluster = cluster
        self.driver = DriverDeployment(cluster)
        self.rng = random.Random(seed)
        self.seed = seed
        self.size = size
        self.tally = Tally()
        self.watch = ClaimWatch(cluster)
        self.plan_done = threading.Event()
        self.faults_done = threading.Event()
        self.agent_kill_phase: queue.Queue[str] = queue.Queue()
        self.agent_kill_done = threading.Event()
        self.agent_kill_taken = threading.Event()
        """Set when a worker has a claim in the asked phase and goes for its agent."""

    # --- kubectl, through restarts -------------------------------------------------------

    def kube(self, *args: str, input: str | None = None) -> str:
        out: str = faults.kubectl_retry(self.cluster, *args, input=input)
        return out

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = json.loads(
                self.kube("get", kind, name, "-n", NAMESPACE, "-o", "json")
            )
        except KubectlFailed as exc:
            if "NotFound" in exc.stderr:
                return None
            raise
        return body

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body``; one that exists already was created by a retried attempt."""
        try:
            text = self.kube("create", "-f", "-", "-o", "json", input=json.dumps(body))
        except KubectlFailed as exc:
            found = self.get(body["kind"].lower(), body["metadata"]["name"])
            if "AlreadyExists" not in exc.stderr or found is None:
                raise
            return found
        created: dict[str, Any] = json.loads(text)
        return created

    def gone(self, kind: str, name: str, uid: str) -> bool:
        body = self.get(kind, name)
        return body is None or body["metadata"]["uid"] != uid

    def wait(self, probe: Callable[[], Any], bound: float, interval: float = 1.0) -> Any:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(interval)
        return None

    def warnings(self, uid: str) -> list[str]:
        items = json.loads(self.kube(
            "get", "events", "-n", NAMESPACE, "-o", "json",
            "--field-selector", f"involvedObject.uid={uid},type=Warning",
        ))["items"]  # fmt: skip
        return [f"{e['reason']}: {e['message']}" for e in items]

    # --- the workload ---------------------------------------------------------------------

    def lifecycle(self, name: str, with_pod: bool) -> None:
        created = time.monotonic()
        body = self.create(claim(name))
        uid = body["metadata"]["uid"]

        def converged() -> str | None:
            if self.watch.first_allocation(uid) is not None:
                return "allocated"
            if time.monotonic() - created > 5 and self.warnings(uid):
                return "warned"
            return None

        outcome = self.wait(converged, CONVERGE_BOUND, interval=0.5)
        if outcome is None:
            self.tally.violation(
                f"claim {name} ({uid}) neither allocated nor warned in {CONVERGE_BOUND:.0f} s"
            )
        allocated = self.wait(lambda: self.watch.first_allocation(uid), ALLOCATION_BOUND)
        if allocated is None:
            with self.tally.lock:
                self.tally.warned_only += 1
            print(f"{name}: not allocated; warnings {self.warnings(uid)[-1:]}", flush=True)
        else:
            with self.tally.lock:
                self.tally.convergence.append(allocated - created)
            if with_pod:
                self.use(name, uid)
        self.kube("delete", "resourceclaim", name, "-n", NAMESPACE, "--wait=false")
        self.maybe_kill_agent("release", name)
        if not self.wait(lambda: self.gone("resourceclaim", name, uid), POD_BOUND):
            self.tally.violation(f"claim {name} ({uid}) stuck deleting after {POD_BOUND:.0f} s")
        with self.tally.lock:
            self.tally.churned += 1
            if self.tally.churned % 50 == 0:
                print(f"progress: {self.tally.churned} claims churned, "
                      f"{len(self.tally.violations) + len(self.watch.violations)} violations, "
                      f"{sum(self.tally.faults.values())} faults", flush=True)  # fmt: skip

    def use(self, claim_name: str, uid: str) -> None:
        name = f"{claim_name}-pod-{uid[:5]}"
        pod_uid = self.create(pod(name, claim_name))["metadata"]["uid"]
        self.maybe_kill_agent("prepare", claim_name)

        def prepared() -> bool:
            body = self.get("resourceclaim", claim_name) or {}
            return bool((body.get("status") or {}).get("devices"))

        if not self.agent_kill_phase.empty() and self.wait(prepared, 60, interval=0.3):
            self.maybe_kill_agent("attach", claim_name)

        def running() -> bool:
            body = self.get("pod", name) or {}
            return (body.get("status") or {}).get("phase") == "Running"

        if self.wait(running, POD_BOUND):
            with self.tally.lock:
                self.tally.pods += 1
        else:
            self.tally.violation(
                f"pod {name} on claim {claim_name} not running in {POD_BOUND:.0f} s"
            )
        time.sleep(self.rng.uniform(0, 2))
        self.kube("delete", "pod", name, "-n", NAMESPACE, "--wait=false")
        if not self.wait(lambda: self.gone("pod", name, pod_uid), POD_BOUND):
            self.tally.violation(f"pod {name} stuck deleting after {POD_BOUND:.0f} s")

    def maybe_kill_agent(self, phase: str, claim_name: str) -> None:
        """If the fault thread asked for an agent kill in ``phase``, kill the claim's agent."""
        try:
            wanted = self.agent_kill_phase.get_nowait()
        except queue.Empty:
            return
        if wanted != phase:
            self.agent_kill_phase.put(wanted)
            return
        body = self.get("resourceclaim", claim_name) or {}
        devices = allocated_devices(body)
        if not devices:
            self.agent_kill_phase.put(wanted)
            return
        node = devices[0][0]  # the pool is the node
        self.agent_kill_taken.set()
        faults.kill(faults.running_agent(node))
        print(f"fault: agent of {node} SIGKILLed during {phase} of {claim_name}", flush=True)
        with self.tally.lock:
            self.tally.faults[f"agent SIGKILL during {phase}"] += 1
        self.agent_kill_done.set()

    def workers(self) -> None:
        """Churn the plan's claims; then fresh ones, until the round of faults is over."""
        plan = [(f"c{i:03d}", self.rng.random() < 0.5) for i in range(self.size)]
        self.rng.shuffle(plan)
        work: queue.Queue[tuple[str, bool]] = queue.Queue()
        for item in plan:
            work.put(item)
        extra = itertools.count()

        def next_item() -> tuple[str, bool] | None:
            try:
                return work.get_nowait()
            except queue.Empty:
                self.plan_done.set()
            if self.faults_done.is_set():
                return None
            return f"x{next(extra):03d}", self.rng.random() < 0.5

        def worker() -> None:
            while (item := next_item()) is not None:
                name, second_pod = item
                try:
                    self.lifecycle(name, with_pod=True)
                    self.lifecycle(name, with_pod=second_pod)
                except Exception as exc:  # a worker's failure is a finding, not a crash
                    self.tally.violation(f"{name}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # --- the faults -----------------------------------------------------------------------

    def fault_plan(self) -> list[str]:
        kinds = ["operator", "operator", "operator-window", "agent:prepare", "agent:attach",
                 "agent:release", APISERVER, ETCD, "nad", "containerd", "agent-stop"]  # fmt: skip
        self.rng.shuffle(kinds)
        return kinds

    def kill_operator(self, *, window: bool) -> None:
        """SIGKILL the leader; measure until another operator holds the Lease."""
        if window:
            self.kill_operator_in_window()
            return
        holder, leader = faults.leader_process(self.cluster)
        faults.kill(leader)
        killed = time.monotonic()
        print(f"fault: operator SIGKILL ({holder})", flush=True)
        self.failed_over(holder, killed, "operator SIGKILL")

    def failed_over(self, holder: str, killed: float, kind: str) -> None:
        took = faults.wait_new_leader(self.cluster, holder) - killed
        with self.tally.lock:
            self.tally.faults[kind] += 1
            self.tally.failover.append(took)

    def kill_operator_in_window(self) -> None:
        """The leader killed after its metadata write and before its status write.

        A claim of its own, labelled so the API server refuses its ``status.allocation``
        (:func:`faults.holding_allocations`): the leader's metadata write lands, its status
        write is refused, and the SIGKILL comes while the claim is marked and unallocated.
        Then the refusal goes; the next leader must finish the claim consistently: allocated
        as its annotation says, released and deleted like any other.
        """
        name = f"window-{self.tally.faults['operator SIGKILL between metadata and status write']}"
        body = claim(name)
        body["metadata"]["labels"] = {faults.HOLD_LABEL: "true"}
        with faults.holding_allocations(self.cluster):
            created = time.monotonic()
            uid = self.create(body)["metadata"]["uid"]

            def marked() -> dict[str, Any] | None:
                found = self.get("resourceclaim", name) or {}
                notes = found.get("metadata", {}).get("annotations") or {}
                return found if ALLOCATION_ANNOTATION in notes else None

            if not self.wait(marked, CONVERGE_BOUND, interval=0.2):
                self.tally.violation(f"claim {name} never got the operator's metadata write")
            holder, leader = faults.leader_process(self.cluster)
            faults.kill(leader)
            killed = time.monotonic()
            after = self.get("resourceclaim", name) or {}
            if ALLOCATION_ANNOTATION in (
                after.get("metadata", {}).get("annotations") or {}
            ) and not allocated_devices(after):
                with self.tally.lock:
                    self.tally.window_hits += 1
            print(f"fault: operator SIGKILL between metadata and status write ({holder}; "
                  f"{name} marked, unallocated)", flush=True)  # fmt: skip
        self.failed_over(holder, killed, "operator SIGKILL between metadata and status write")
        allocated = self.wait(lambda: self.watch.first_allocation(uid), ALLOCATION_BOUND)
        if allocated is None:
            self.tally.violation(f"claim {name} not allocated after the window kill")
        else:
            final = self.get("resourceclaim", name) or {}
            record = allocation_record.decode(
                final["metadata"]["annotations"][ALLOCATION_ANNOTATION]
            )
            noted = sorted((r.pool, r.device) for r in record)
            if noted != sorted(allocated_devices(final)):
                self.tally.violation(
                    f"claim {name}: annotation {noted} != allocation {allocated_devices(final)}"
                )
            with self.tally.lock:
                self.tally.convergence.append(allocated - created)
        self.kube("delete", "resourceclaim", name, "-n", NAMESPACE, "--wait=false")
        if not self.wait(lambda: self.gone("resourceclaim", name, uid), POD_BOUND):
            self.tally.violation(f"claim {name} ({uid}) stuck deleting after {POD_BOUND:.0f} s")
        with self.tally.lock:
            self.tally.churned += 1

    def inject(self, kind: str) -> None:
        if kind.startswith("operator"):
            self.kill_operator(window=kind == "operator-window")
        elif kind.startswith("agent:"):
            self.agent_kill_done.clear()
            self.agent_kill_taken.clear()
            self.agent_kill_phase.put(kind.split(":")[1])
            if not self.agent_kill_taken.wait(timeout=90):
                with contextlib.suppress(queue.Empty):
                    self.agent_kill_phase.get_nowait()
                print(f"fault: no claim reached {kind} in time; not injected", flush=True)
            else:  # a worker waits for the agent to settle, then kills it
                self.agent_kill_done.wait(timeout=700)
        elif kind in (APISERVER, ETCD):
            faults.restart_control_plane(self.cluster, kind)
            print(f"fault: {kind} restarted", flush=True)
            with self.tally.lock:
                self.tally.faults[f"{kind} restart"] += 1
        elif kind == "nad":
            faults.recreate_nad(self.cluster, NAMESPACE, NETWORK, gone_for=3)
            print("fault: NAD deleted and created again", flush=True)
            with self.tally.lock:
                self.tally.faults["NAD deleted+recreated"] += 1
        elif kind == "agent-stop":
            node = self.rng.choice(self.driver.nodes)
            agent = faults.running_agent(node)
            faults.pause(agent, AGENT_STOP)
            print(f"fault: agent of {node} stopped (SIGSTOP) for {AGENT_STOP:.0f} s", flush=True)
            with self.tally.lock:
                self.tally.faults[f"agent stopped {AGENT_STOP:.0f} s"] += 1
        elif kind == "containerd":
            node = self.rng.choice(self.driver.nodes)
            faults.restart_containerd(self.cluster, node)
            print(f"fault: containerd of {node} restarted", flush=True)
            with self.tally.lock:
                self.tally.faults["containerd restart"] += 1

    def fault_thread(self) -> None:
        """Rounds of every fault, in seeded order and gaps, until the plan's claims are done."""
        try:
            while True:
                for kind in self.fault_plan():
                    time.sleep(self.rng.uniform(2, 6))
                    try:
                        self.inject(kind)
                    except Exception as exc:  # reported; the run goes on
                        self.tally.violation(f"fault {kind} failed: {type(exc).__name__}: {exc}")
                if self.plan_done.is_set():
                    return
        finally:
            self.faults_done.set()

    # --- the run --------------------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.watch.start()
        try:
            yield
        finally:
            self.watch.stop()

    def run(self) -> Tally:
        started = time.monotonic()
        with contextlib.suppress(KubectlFailed):
            self.kube("create", "namespace", NAMESPACE)
        self.create(nad())
        vfs_before = vf_states(self.driver)
        netns_before = pod_netns()
        with self.watching():
            faulting = threading.Thread(target=self.fault_thread, name="faults")
            faulting.start()
            self.workers()
            faulting.join()
            self.tally.violations += self.watch.violations

        def left() -> dict[str, list[str]]:
            found: dict[str, list[str]] = leftovers(
                self.cluster, self.driver, namespace=NAMESPACE, network=NETWORK,
                vfs_before=vfs_before, netns_before=netns_before,
            )  # fmt: skip
            return found

        # The agents' sweep and the kubelets' sandbox clean-up may still be finishing.
        self.wait(lambda: not left(), 90, interval=2)
        self.tally.leaks = left()
        self.kube("delete", "namespace", NAMESPACE, "--timeout=120s")
        self.tally.seconds = time.monotonic() - started
        return self.tally


def install(cluster: DevCluster) -> None:
    """The driver as users install it (CRDs, manifests/simulated), as the demo does."""
    driver = DriverDeployment(cluster)
    Walkthrough(cluster, driver, echo=lambda _line: None).step0_install()
