"""Node emulation for the dev cluster: plays kubelet and container runtime for simulated nodes.

EMULATION, not a kubelet. No kubelet or container runtime runs on this machine,
and kwok only keeps the simulated Nodes Ready. For every pod bound to one of
the simulated nodes this process does, in order, what a 1.34 kubelet with a
CDI-capable runtime does for a pod with ResourceClaims:

1. GET each claim from the API server and require the pod in
   ``status.reservedFor`` (the kubelet's own check and message);
2. find the claim's driver among the plugins registered in the node's
   registrar directory (GetInfo over the registration socket, as the plugin
   watcher does; ``v1.DRAPlugin`` preferred) and call ``NodePrepareResources``
   over the plugin's real gRPC socket, once per claim and node;
3. create the pod's sandbox: a named network namespace
   ``pod-<namespace>-<name>`` with a process in it (see ``pod_sandbox``);
4. resolve the returned CDI device IDs against the spec files in the node's
   CDI directory and run their ``createRuntime`` hooks with the OCI state
   (host pid of the sandbox process, bundle path) on stdin, like runc;
5. only then report the pod Running and Ready through the status subresource.

A failure leaves the pod Pending/ContainerCreating with a Warning Event
(``FailedPrepareDynamicResources``, or ``FailedCreatePodSandBox`` for the
sandbox and its hooks) and is retried with backoff. When a pod gets a
deletionTimestamp (or disappears), the process is stopped and the netns
removed (a runtime's StopPodSandbox), then ``NodeUnprepareResources`` is called
once no other pod on the node uses the claim (the kubelet's order: the sandbox
is gone before resources are unprepared), and the deletion is finished with
grace 0. A failing unprepare keeps the pod Terminating and is retried.

One emulator process serves every simulated node given with ``--node``; each
node has its own directories (``node_layout.NodeLayout``) and checkpoint, so a
restarted emulator picks up where it stopped. It authenticates with the
kubeconfig it is given (the dev cluster's admin; a real kubelet would use its
node identity).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import secrets
import shutil
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sriov_dra import jsonlog
from sriov_dra.errors import SriovDraError
from sriov_dra_kube.events import EventRecorder
from sriov_dra_kube.list_watch import ListWatch

from sriov_dra_devcluster import cdi_runtime, pod_sandbox
from sriov_dra_devcluster.emulated_pod import (
    BACKOFF_MAX,
    BACKOFF_START,
    COMPONENT,
    DEFAULT_POD_CIDR,
    RESYNC_SECONDS,
    PrepareFailed,
    SandboxFailed,
    UnprepareFailed,
    api_time_now,
    check_reserved,
    container_cdi_ids,
    creating_status,
    drivers_of,
    pod_claims,
    running_status,
)
from sriov_dra_devcluster.emulator_state import (
    ClaimRecord,
    NodeState,
    PodRecord,
    podnet_name,
)
from sriov_dra_devcluster.kube_client import ApiException, KubeClient
from sriov_dra_devcluster.kubelet_plugins import (
    ClaimRef,
    PluginNotRegistered,
    PreparedDevice,
    node_prepare_resources,
    node_unprepare_resources,
)
from sriov_dra_devcluster.node_layout import NodeLayout

log = logging.getLogger("sriov_dra_devcluster.node_emulator")

# --- the emulator ------------------------------------------------------------------------


class NodeEmulator:
    """Plays kubelet + runtime for pods bound to the nodes in ``layouts``."""

    def __init__(
        self,
        kube: KubeClient,
        layouts: Sequence[NodeLayout],
        *,
        netns_prefix: str = "",
        pod_cidr: str = DEFAULT_POD_CIDR,
    ) -> None:
        self.kube = kube
        self.netns_prefix = netns_prefix
        self.podnet = podnet_name(layouts[0].root, netns_prefix)
        subnets = ipaddress.IPv4Network(pod_cidr).subnets(new_prefix=24)
        next(subnets)  # 10.244.0.0/24 stays unused, node N gets 10.244.N.0/24
        self.nodes = {layout.node: NodeState(layout, next(subnets)) for layout in layouts}
        self._pods: dict[str, dict[str, Any]] = {}
        self._gone: set[str] = set()
        self._kicks: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._events = {
            node: EventRecorder(
                kube, component=COMPONENT, instance=node, host=node, kind="Pod", repeat_interval=0
            )
            for node in self.nodes
        }
        """Each node's Events on its pods: a repeat bumps the Event's count at once."""

    # --- main loop ---

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then leave pods running (a kubelet restart does too)."""
        await pod_sandbox.ensure_netns(self.podnet)
        for state in self.nodes.values():
            state.layout.create()
            state.load()
            node = await self.kube.get_node(state.layout.node)
            state.host_ip = _internal_ip(node) if node else ""
            for uid, record in state.pods.items():
                self._pods.setdefault(uid, _stub_pod(record, state.layout.node))
        watcher = asyncio.create_task(self._watch(stop))
        try:
            await stop.wait()
        finally:
            watcher.cancel()
            workers = list(self._workers.values())
            for task in workers:
                task.cancel()
            await asyncio.gather(watcher, *workers, return_exceptions=True)

    async def _watch(self, stop: asyncio.Event) -> None:
        """List, then watch pods; relist on expiry or error; resync every RESYNC_SECONDS."""
        await ListWatch(
            what="pod",
            relist=self._list,
            watch=self.kube.watch_pods,
            on_event=self._observe,
            timeout_seconds=int(RESYNC_SECONDS),
            relist_every=RESYNC_SECONDS,
        ).run(stop)

    async def _list(self) -> str:
        items, version = await self.kube.list_pods()
        self._relist(items)
        return version

    def _ours(self, pod: Mapping[str, Any]) -> bool:
        return pod.get("spec", {}).get("nodeName") in self.nodes

    def _relist(self, items: Iterable[dict[str, Any]]) -> None:
        seen = set()
        for pod in items:
            if self._ours(pod):
                seen.add(pod["metadata"]["uid"])
                self._observe("MODIFIED", pod)
        known = {uid for state in self.nodes.values() for uid in state.pods}
        for uid in (known | set(self._pods)) - seen:
            if uid in self._pods:
                self._observe("DELETED", self._pods[uid])

    def _observe(self, kind: str, pod: dict[str, Any]) -> None:
        if not self._ours(pod):
            return
        uid = pod["metadata"]["uid"]
        self._pods[uid] = pod
        if kind == "DELETED":
            self._gone.add(uid)
        self._kick(uid)

    def _kick(self, uid: str) -> None:
        event = self._kicks.setdefault(uid, asyncio.Event())
        event.set()
        if uid not in self._workers or self._workers[uid].done():
            self._workers[uid] = asyncio.create_task(self._worker(uid), name=f"pod-{uid}")

    async def _worker(self, uid: str) -> None:
        """Reconcile one pod whenever it changes; retry failures with exponential backoff."""
        kick = self._kicks[uid]
        backoff = BACKOFF_START
        while True:
            await kick.wait()
            kick.clear()
            pod = self._pods[uid]
            state = self.nodes[pod["spec"]["nodeName"]]
            try:
                finished = await self._reconcile(state, pod, gone=uid in self._gone)
            except SriovDraError as exc:
                await self._report_failure(state, pod, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), backoff)
                kick.set()
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except Exception as exc:
                log.exception("unexpected error in the node emulation", extra=_pod_extra(pod))
                await self._report_failure(
                    state, pod, SandboxFailed(f"node emulation error: {exc!r}")
                )
                await asyncio.sleep(backoff)
                kick.set()
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_START
            if finished:
                self._pods.pop(uid, None)
                self._gone.discard(uid)
                self._kicks.pop(uid, None)
                self._workers.pop(uid, None)
                return

    async def _reconcile(self, state: NodeState, pod: dict[str, Any], *, gone: bool) -> bool:
        """Bring the emulation in line with ``pod``; True once the pod is gone and torn down."""
        meta = pod["metadata"]
        async with state.lock:
            if gone or meta.get("deletionTimestamp"):
                await self._teardown(state, meta["uid"])
                if not gone:
                    await self.kube.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
                    log.info("pod deletion finished", extra=_pod_extra(pod))
                return gone
            await self._start(state, pod)
            return False

    # --- start ---

    async def _start(self, state: NodeState, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        record = state.pods.get(meta["uid"])
        if record is None:
            record = PodRecord(meta["namespace"], meta["name"], meta["uid"])
            state.pods[meta["uid"]] = record
            state.save()
        if record.sandbox is not None and not record.sandbox.alive():
            # The sandbox process died (or the host rebooted): start the sandbox over.
            log.warning("sandbox process gone; recreating it", extra=_pod_extra(pod))
            await pod_sandbox.remove_netns(record.sandbox.netns)
            record.sandbox = None
            record.containers.clear()
            record.reported_running = False
            state.save()
        if (
            record.reported_running
            and record.sandbox is not None
            and pod.get("status", {}).get("phase") == "Running"
        ):
            return
        prepared = await self._prepare_claims(state, pod, record)
        if record.sandbox is None:
            await self._create_sandbox(state, pod, record)
        await self._create_containers(state, pod, record, prepared)
        if not record.reported_running or pod.get("status", {}).get("phase") != "Running":
            assert record.sandbox is not None
            await self.kube.patch_pod_status(
                meta["namespace"],
                meta["name"],
                running_status(
                    pod,
                    pod_ip=record.sandbox.pod_ip,
                    host_ip=state.host_ip,
                    container_ids=record.containers,
                    started_at=api_time_now(),
                ),
            )
            if not record.reported_running:
                record.reported_running = True
                state.save()
                for name in record.containers:
                    await self._event(
                        state,
                        pod,
                        "Normal",
                        "Started",
                        f"Started container {name} (emulated: sandbox process "
                        f"{record.sandbox.pid} in netns {record.sandbox.netns})",
                    )
            log.info(
                "pod running",
                extra={
                    **_pod_extra(pod),
                    "netns": record.sandbox.netns,
                    "pod_ip": record.sandbox.pod_ip,
                },
            )

    async def _prepare_claims(
        self, state: NodeState, pod: dict[str, Any], record: PodRecord
    ) -> dict[str, list[PreparedDevice]]:
        """Prepare every claim of the pod not yet prepared on this node; pod claim -> devices."""
        meta = pod["metadata"]
        result: dict[str, list[PreparedDevice]] = {}
        for entry in pod_claims(pod):
            claim = await self.kube.get_claim(meta["namespace"], entry.claim_name)
            if claim is None:
                raise PrepareFailed(
                    f"failed to fetch ResourceClaim {entry.claim_name} referenced by pod "
                    f"{meta['name']}: not found"
                )
            check_reserved(pod, claim)
            cmeta = claim["metadata"]
            ref = ClaimRef(cmeta["namespace"], cmeta["name"], cmeta["uid"])
            prepared = state.claims.get(ref.uid)
            if prepared is None:
                devices: dict[str, list[PreparedDevice]] = {}
                for driver in drivers_of(claim):
                    try:
                        plugin = await state.plugins.plugin(driver)
                    except PluginNotRegistered as exc:
                        raise PrepareFailed(str(exc)) from exc
                    try:
                        answers = await node_prepare_resources(plugin, [ref])
                    except Exception as exc:
                        raise PrepareFailed(
                            f"NodePrepareResources failed for ResourceClaim {ref.name}: "
                            f"{_rpc_error(exc)}"
                        ) from exc
                    answer = answers[ref.uid]
                    if answer.error:
                        raise PrepareFailed(
                            f"NodePrepareResources failed for ResourceClaim {ref.name}: "
                            f"{answer.error}"
                        )
                    devices[driver] = list(answer.devices)
                prepared = ClaimRecord(ref, devices)
                state.claims[ref.uid] = prepared
                log.info(
                    "claim prepared",
                    extra={
                        **_pod_extra(pod),
                        "claim": f"{ref.namespace}/{ref.name}",
                        "uid": ref.uid,
                        "cdi_ids": [
                            i for d in devices.values() for x in d for i in x.cdi_device_ids
                        ],
                    },
                )
            prepared.pods.add(record.uid)
            record.claims[entry.pod_claim_name] = ref.uid
            state.save()
            result[entry.pod_claim_name] = [d for ds in prepared.devices.values() for d in ds]
        return result

    async def _create_sandbox(
        self, state: NodeState, pod: dict[str, Any], record: PodRecord
    ) -> None:
        meta = pod["metadata"]
        netns = pod_sandbox.pod_netns_name(meta["namespace"], meta["name"], self.netns_prefix)
        if pod_sandbox.netns_exists(netns) and not any(
            p.sandbox and p.sandbox.netns == netns
            for s in self.nodes.values()
            for p in s.pods.values()
        ):
            raise SandboxFailed(
                f"network namespace {netns} already exists and is not this emulator's",
                fix=f"remove it (ip netns delete {netns}) or stop the other emulator using it",
            )
        try:
            sandbox, proc = await pod_sandbox.create(
                netns,
                podnet=self.podnet,
                peer=f"e-{meta['uid'].replace('-', '')[:12]}",
                pod_ip=state.free_pod_ip(),
                prefix_len=state.pod_subnet.prefixlen,
                title=f"sriov-dra-emulated-pod {meta['namespace']}/{meta['name']}",
            )
        except pod_sandbox.SandboxError as exc:
            raise SandboxFailed(f"failed to create pod sandbox: {exc}") from exc
        record.sandbox = sandbox
        self._procs[record.uid] = proc
        state.save()
        log.info(
            "sandbox created",
            extra={**_pod_extra(pod), "netns": netns, "pid": sandbox.pid, "pod_ip": sandbox.pod_ip},
        )

    async def _create_containers(
        self,
        state: NodeState,
        pod: dict[str, Any],
        record: PodRecord,
        prepared: Mapping[str, Sequence[PreparedDevice]],
    ) -> None:
        """Per container: resolve its CDI devices, write its bundle, run createRuntime hooks."""
        assert record.sandbox is not None
        meta = pod["metadata"]
        specs = None
        for container in pod["spec"]["containers"]:
            name = container["name"]
            if name in record.containers:
                continue
            ids = container_cdi_ids(container, prepared)
            try:
                if specs is None:
                    specs = cdi_runtime.load_specs(state.layout.cdi_dir)
                edits = cdi_runtime.resolve(ids, specs)
            except cdi_runtime.CdiError as exc:
                raise SandboxFailed(
                    f"failed to create container {name}: CDI device injection failed: {exc}"
                ) from exc
            container_id = secrets.token_hex(16)
            bundle = state.bundle_dir(container_id)
            annotations = {
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.container-name": name,
                "io.kubernetes.cri.sandbox-name": meta["name"],
                "io.kubernetes.cri.sandbox-namespace": meta["namespace"],
                "io.kubernetes.cri.sandbox-uid": meta["uid"],
                "sriov-dra.emulation/node": state.layout.node,
            }
            cdi_runtime.write_bundle(
                bundle,
                args=container.get("command", []) + container.get("args", []),
                edits=edits,
                netns_path=pod_sandbox.netns_path(record.sandbox.netns),
                annotations=annotations,
                hostname=meta["name"],
            )
            hooks = edits.hooks_named("createRuntime")
            state_json = cdi_runtime.oci_state(
                container_id, record.sandbox.pid, bundle, annotations
            )
            try:
                await cdi_runtime.run_hooks(hooks, state_json, "createRuntime")
            except cdi_runtime.HookFailed as exc:
                shutil.rmtree(bundle, ignore_errors=True)
                raise SandboxFailed(f"failed to create container {name}: {exc}") from exc
            record.containers[name] = container_id
            state.save()
            log.info(
                "container created",
                extra={
                    **_pod_extra(pod),
                    "container": name,
                    "cdi_ids": ids,
                    "hooks": len(hooks),
                    "bundle": str(bundle),
                },
            )
            await self._event(
                state,
                pod,
                "Normal",
                "Created",
                f"Created container {name} (emulated; CDI devices: {', '.join(ids) or 'none'}; "
                f"{len(hooks)} createRuntime hook(s) run)",
            )

    # --- teardown ---

    async def _teardown(self, state: NodeState, uid: str) -> None:
        """Stop the process, remove the netns, unprepare claims no other pod here uses."""
        record = state.pods.get(uid)
        if record is None:
            return
        extra = {
            "pod": f"{record.namespace}/{record.name}",
            "pod_uid": uid,
            "node": state.layout.node,
        }
        if record.sandbox is not None:
            # As the kubelet does: the runtime stops and removes the sandbox (its netns
            # goes, and with it a VF still inside) before UnprepareResources is called.
            try:
                await pod_sandbox.stop_process(record.sandbox, self._procs.get(uid))
                self._procs.pop(uid, None)
                await pod_sandbox.remove_netns(record.sandbox.netns)
            except pod_sandbox.SandboxError as exc:
                raise SandboxFailed(str(exc)) from exc
            log.info("sandbox removed", extra={**extra, "netns": record.sandbox.netns})
            record.sandbox = None
            state.save()
        for claim_uid in sorted(set(record.claims.values())):
            claim = state.claims.get(claim_uid)
            if claim is None:
                continue
            claim.pods.discard(uid)
            if claim.pods:
                continue
            for driver in claim.devices:
                try:
                    plugin = await state.plugins.plugin(driver)
                    errors = await node_unprepare_resources(plugin, [claim.ref])
                except PluginNotRegistered as exc:
                    raise UnprepareFailed(str(exc)) from exc
                except Exception as exc:
                    raise UnprepareFailed(
                        f"NodeUnprepareResources failed for ResourceClaim {claim.ref.name}: "
                        f"{_rpc_error(exc)}"
                    ) from exc
                if errors[claim.ref.uid]:
                    raise UnprepareFailed(
                        f"NodeUnprepareResources failed for ResourceClaim {claim.ref.name}: "
                        f"{errors[claim.ref.uid]}"
                    )
            del state.claims[claim_uid]
            state.save()
            log.info(
                "claim unprepared",
                extra={
                    **extra,
                    "claim": f"{claim.ref.namespace}/{claim.ref.name}",
                    "uid": claim_uid,
                },
            )
        for container_id in record.containers.values():
            shutil.rmtree(state.bundle_dir(container_id), ignore_errors=True)
        del state.pods[uid]
        state.save()
        log.info("pod torn down", extra=extra)

    # --- reporting ---

    async def _report_failure(
        self, state: NodeState, pod: dict[str, Any], exc: SriovDraError
    ) -> None:
        meta = pod["metadata"]
        message = exc.describe()
        log.warning(message, extra={**_pod_extra(pod), "reason": exc.reason})
        try:
            if not meta.get("deletionTimestamp") and meta["uid"] not in self._gone:
                record = state.pods.get(meta["uid"])
                if record is not None:
                    record.reported_running = False
                await self.kube.patch_pod_status(
                    meta["namespace"],
                    meta["name"],
                    creating_status(pod, host_ip=state.host_ip, message=message),
                )
            if meta["uid"] not in self._gone:
                await self._event(state, pod, "Warning", exc.reason, message)
        except ApiException as api_exc:
            if api_exc.status != 404:
                log.warning("could not report a failure", extra={"error": str(api_exc)})

    async def _event(
        self, state: NodeState, pod: Mapping[str, Any], kind: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on the pod; repeats of the same event bump its count."""
        await self._events[state.layout.node].post(
            pod, warning=kind == "Warning", reason=reason, message=message
        )


def _internal_ip(node: Mapping[str, Any]) -> str:
    for address in node.get("status", {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address["address"])
    return ""


def _stub_pod(record: PodRecord, node: str) -> dict[str, Any]:
    """A placeholder for a checkpointed pod until the API server tells us about it."""
    return {
        "metadata": {"namespace": record.namespace, "name": record.name, "uid": record.uid},
        "spec": {"nodeName": node, "containers": []},
    }


def _pod_extra(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "pod": f"{meta['namespace']}/{meta['name']}",
        "pod_uid": meta["uid"],
        "node": pod.get("spec", {}).get("nodeName"),
    }


def _rpc_error(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    code = getattr(exc, "code", None)
    if callable(details) and callable(code):
        return f"rpc error: code = {code().name} desc = {details()}"
    return str(exc)


# --- CLI ---------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``sriov-dra node-emulator``."""
    parser.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig to use")
    parser.add_argument(
        "--root",
        type=Path,
        required=True,
        help="root of the simulated nodes' directories (<root>/<node>/plugins_registry, cdi, ...)",
    )
    parser.add_argument(
        "--node",
        action="append",
        required=True,
        dest="nodes",
        help="a simulated node to play the kubelet for (repeat for several)",
    )
    parser.add_argument(
        "--netns-prefix", default="", help="prefix for the pods' netns names (default none)"
    )
    parser.add_argument(
        "--pod-cidr",
        default=DEFAULT_POD_CIDR,
        help=f"range of the fake pod IPs, a /24 per node (default {DEFAULT_POD_CIDR})",
    )
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT."""
    jsonlog.configure(args.log_level)
    layouts = [NodeLayout(args.root, node) for node in args.nodes]
    return asyncio.run(_main(args.kubeconfig, layouts, args.netns_prefix, args.pod_cidr))


async def _main(kubeconfig: Path, layouts: list[NodeLayout], prefix: str, pod_cidr: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kube = await KubeClient.from_kubeconfig(kubeconfig)
    emulator = NodeEmulator(kube, layouts, netns_prefix=prefix, pod_cidr=pod_cidr)
    log.info(
        "node emulation started (plays kubelet + runtime; not a real kubelet)",
        extra={"nodes": [layout.node for layout in layouts], "root": str(layouts[0].root)},
    )
    try:
        await emulator.run(stop)
    finally:
        await kube.close()
    log.info("node emulation stopped; pods' sandboxes left running for the next start")
    return 0
