"""The faults a chaos run injects into a dev cluster with real nodes, each one for real.

- the operator and the agents run in containers under the nodes' containerd: they are
  found among this machine's processes (one PID namespace) and SIGKILLed; the kubelet
  restarts them as it would in production;
- kube-apiserver, etcd and each node's containerd are components of the dev cluster:
  stopped (SIGTERM, SIGKILL after a grace) and started again with the same command
  line, etcd on the same data directory; the cluster's state file is updated so
  ``devcluster down`` finds the new process;
- a NetworkAttachmentDefinition is deleted and created again.

The operator's failover time is read from its Lease: from the SIGKILL of the leader to
the moment the Lease names another holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sriov_dra_devcluster import processes
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.components import APISERVER, ETCD
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE
from sriov_dra_devcluster.errors import KubectlFailed
from sriov_dra_devcluster.node_plan import CONTAINERD_SOCKET
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent
from sriov_dra_devcluster.real_nodes import CONTAINERD, HOLDER, node_specs
from sriov_dra_devcluster.state_dir import StateDir
from sriov_dra_devcluster.waiting import wait_until

LEASE: Final = "sriov-dra-operator"
"""The operator's leader-election Lease (manifests/base/operator-deployment.yaml)."""
OPERATOR_SELECTOR: Final = "app.kubernetes.io/name=sriov-dra-operator"
STANDBY_WAIT: Final = 330.0
"""The kubelet's restart back-off reaches 300 s for a container killed again and again."""
LEADER_WAIT: Final = 90.0
"""Longest wait for a new leader: the 15 s lease, a restart backoff, an API server restart."""


@dataclass(frozen=True)
class DriverProcess:
    """One process of the driver running in a pod's container, seen from this machine."""

    pid: int
    cmdline: str
    hostname: str


def driver_processes() -> list[DriverProcess]:
    """Every ``sriov-dra operator``/``agent`` process on this machine, with its HOSTNAME."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if not any(w.endswith("/sriov-dra") or w == "sriov-dra" for w in words[:2]):
            continue
        env = dict(e.decode(errors="replace").partition("=")[::2] for e in environ if b"=" in e)
        found.append(DriverProcess(int(entry.name), " ".join(words), env.get("HOSTNAME", "")))
    return found


def kill(process: DriverProcess) -> None:
    """SIGKILL one driver process (gone already is fine: it was killed)."""
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def pause(process: DriverProcess, seconds: float) -> None:
    """SIGSTOP a driver process for ``seconds``, then SIGCONT it (if the kubelet has not
    restarted its container meanwhile)."""
    os.kill(process.pid, signal.SIGSTOP)
    time.sleep(seconds)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)


def agent_process(node: str) -> DriverProcess:
    """The agent of ``node``: in a container (HOSTNAME set), ``--node-name`` on its command line."""
    for proc in driver_processes():
        ours = proc.hostname and " agent " in f"{proc.cmdline} "
        if ours and f"--node-name={node}" in proc.cmdline.split():
            return proc
    raise LookupError(f"no sriov-dra agent process of {node} on this machine")


AGENT_SETTLE: Final = 120.0
"""Seconds an agent runs before the next fault may hit it: kills stacked on a fresh
restart keep the kubelet's back-off at its 5 min cap and starve its node's pods for
good; production sees a crash now and then, not one each minute."""


def process_age(pid: int) -> float:
    """Seconds since process ``pid`` started (from /proc, in clock ticks since boot)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    started = int(stat.rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started


def running_agent(node: str, timeout: float = 600.0) -> DriverProcess:
    """The agent of ``node`` once it has run for :data:`AGENT_SETTLE`: an earlier fault may
    have left its container in the kubelet's restart back-off (up to 5 min), and a fault
    aimed at no process would prove nothing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            agent = agent_process(node)
            if process_age(agent.pid) >= AGENT_SETTLE:
                return agent
        except (LookupError, OSError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise LookupError(f"the agent of {node} ran for less than {AGENT_SETTLE:.0f} s")
        time.sleep(1)


def lease(cluster: DevCluster) -> dict[str, Any]:
    """The operator's Lease (spec only), read with retries through API server restarts."""
    body = kubectl_retry(cluster, "get", "lease", LEASE, "-n", SYSTEM_NAMESPACE, "-o", "json")
    spec: dict[str, Any] = json.loads(body).get("spec", {})
    return spec


def operators_ready(cluster: DevCluster) -> bool:
    """Whether every operator replica's container runs and is ready (a standby exists)."""
    pods = json.loads(
        kubectl_retry(
            cluster, "get", "pods", "-n", SYSTEM_NAMESPACE, "-o", "json", "-l", OPERATOR_SELECTOR
        )
    )["items"]
    statuses = [s for p in pods for s in p.get("status", {}).get("containerStatuses") or []]
    return len(pods) > 1 and all(s.get("ready") for s in statuses)


def leader_process(cluster: DevCluster) -> tuple[str, DriverProcess]:
    """The Lease's holder identity and the operator process of that pod.

    Waits first until the standby is ready too: killed repeatedly, both replicas can be
    in the kubelet's CrashLoopBackOff at once, and then no operator is left to fail over to.
    """
    wait_until(
        lambda: operators_ready(cluster),
        timeout=STANDBY_WAIT,
        what="both operator replicas to be ready",
        interval=1,
    )
    holder = wait_until(
        lambda: lease(cluster).get("holderIdentity"), timeout=LEADER_WAIT, what="an operator leader"
    )
    pod = holder.rsplit("_", 1)[0]
    for proc in driver_processes():
        if " operator" in proc.cmdline and proc.hostname == pod:
            return holder, proc
    raise LookupError(f"the leader {holder} has no operator process on this machine")


def wait_new_leader(cluster: DevCluster, old: str) -> float:
    """Block until the Lease names a holder other than ``old``; returns the monotonic time."""
    wait_until(
        lambda: lease(cluster).get("holderIdentity") not in (None, "", old),
        timeout=LEADER_WAIT,
        what=f"an operator other than {old} to lead",
        interval=0.1,
    )
    return time.monotonic()


HOLD_LABEL: Final = "chaos.sriov-dra/hold-allocation"
"""A claim with this label gets no ``status.allocation`` while :func:`holding_allocations`."""
HOLD_POLICY: Final = "chaos-hold-allocation"


def _hold_policy() -> str:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": HOLD_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["resource.k8s.io"], "apiVersions": ["*"],
                "operations": ["UPDATE"], "resources": ["resourceclaims/status"],
            }]},
            "validations": [{
                "expression": "!has(object.status) || !has(object.status.allocation)",
                "message": "chaos: status.allocation held back to catch the operator "
                           "between its metadata write and its status write",
                "reason": "Forbidden",
            }],
        },
    }  # fmt: skip
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": HOLD_POLICY},
        "spec": {
            "policyName": HOLD_POLICY,
            "validationActions": ["Deny"],
            "matchResources": {"objectSelector": {"matchLabels": {HOLD_LABEL: "true"}}},
        },
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy, binding]})


@contextlib.contextmanager
def holding_allocations(cluster: DevCluster) -> Iterator[None]:
    """While inside, the API server refuses ``status.allocation`` on claims labelled
    :data:`HOLD_LABEL`: the operator's metadata write lands, its status write does not,
    which opens its window between the two for as long as a SIGKILL needs."""
    cluster.kubectl("apply", "-f", "-", input=_hold_policy())
    time.sleep(2)  # the API server's policy informer picks the binding up
    try:
        yield
    finally:
        kinds = "validatingadmissionpolicybinding,validatingadmissionpolicy"
        kubectl_retry(cluster, "delete", kinds, HOLD_POLICY, "--ignore-not-found")


def kubectl_retry(
    cluster: DevCluster, *args: str, input: str | None = None, timeout: float = 120.0
) -> str:
    """kubectl, retried while the API server (or etcd behind it) is restarting.

    NotFound and AlreadyExists are answers, not outages: they are raised at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cluster.kubectl(*args, input=input, timeout=60).stdout
        except KubectlFailed as exc:
            if "NotFound" in exc.stderr or "AlreadyExists" in exc.stderr:
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _respawn(
    cluster: DevCluster, name: str, make_spec: Callable[[RunningComponent], ComponentSpec]
) -> None:
    """Stop component ``name`` and start it again from ``make_spec``; record the new pid."""
    state_dir = StateDir(cluster.state_dir)
    with state_dir.exclusive():
        state = state_dir.load()
        entries = state["components"]
        index = next(i for i, c in enumerate(entries) if c["name"] == name)
        old = RunningComponent.from_json(entries[index])
        spec = make_spec(old)
        processes.stop([old])
        new = processes.start(spec, Path(old.log_file))
        entries[index] = new.to_json()
        state_dir.save(state)


def _spec_from_process(old: RunningComponent) -> ComponentSpec:
    """The command line and environment of a running component, to start it again alike."""
    argv = tuple(
        a.decode() for a in Path(f"/proc/{old.pid}/cmdline").read_bytes().split(b"\0") if a
    )
    environ = Path(f"/proc/{old.pid}/environ").read_bytes().split(b"\0")
    env = tuple(tuple(e.decode().split("=", 1)) for e in environ if b"=" in e)
    return ComponentSpec(old.name, argv, old.port, old.health_url, env)  # type: ignore[arg-type]


def restart_control_plane(cluster: DevCluster, name: str) -> None:
    """Restart kube-apiserver or etcd (data kept) and wait until the API answers again."""
    if name not in (APISERVER, ETCD):
        raise ValueError(f"not a control-plane component this run restarts: {name}")
    _respawn(cluster, name, _spec_from_process)
    wait_until(
        lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
        timeout=90,
        what=f"the API server to be ready after restarting {name}",
        interval=0.5,
    )


def restart_containerd(cluster: DevCluster, node: str) -> None:
    """Restart ``node``'s containerd (running containers keep running under their shims)."""
    state = StateDir(cluster.state_dir).load()
    holder = next(c for c in state["components"] if c["name"] == f"{HOLDER}/{node}")
    plan = cluster.node_plan(node)

    def spec(_old: RunningComponent) -> ComponentSpec:
        specs = node_specs(
            plan, holder["pid"], node_bin=Path(state["node_bin"]), kubelet_kubeconfig=Path()
        )
        return next(s for s in specs if s.name == f"{CONTAINERD}/{node}")

    socket = plan.directory / "containerd-run" / Path(CONTAINERD_SOCKET).name
    before = time.time()
    _respawn(cluster, f"{CONTAINERD}/{node}", spec)
    wait_until(
        lambda: socket.exists() and socket.stat().st_ctime >= before,
        timeout=60,
        what=f"containerd of {node} to listen again on {socket}",
    )


def recreate_nad(cluster: DevCluster, namespace: str, name: str, gone_for: float) -> None:
    """Delete the NAD, leave it gone ``gone_for`` seconds, create it again as it was."""
    body = json.loads(
        kubectl_retry(cluster, "get", "net-attach-def", name, "-n", namespace, "-o", "json")
    )
    kept = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {"name": name, "namespace": namespace},
        "spec": body["spec"],
    }
    kubectl_retry(cluster, "delete", "net-attach-def", name, "-n", namespace, "--wait=true")
    time.sleep(gone_for)
    cluster.kubectl("create", "-f", "-", input=json.dumps(kept))
