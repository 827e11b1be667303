"""``sriov-dra hook`` run as the runtime runs it: a subprocess, OCI state on stdin,
talking to a real AttachServer on a unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sriov_dra.errors import NadNotFound
from sriov_dra_agent.attach.attach_socket import AttachRequest, AttachResult, AttachServer
from sriov_dra_agent.kubelet.cdi import CdiHook, CdiVf, build_claim_spec

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = Path(sys.executable).parent / "sriov-dra"
UID = "3f2b8c1e-6d0a-4a55-9c1b-2f4e8a9d7b10"


class RecordingAttacher:
    def __init__(self) -> None:
        self.requests: list[AttachRequest] = []
        self.error: Exception | None = None

    async def attach(self, request: AttachRequest) -> AttachResult:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return AttachResult(interfaces=("net1",))


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield root
    shutil.rmtree(root)


@pytest.fixture
def attacher() -> RecordingAttacher:
    return RecordingAttacher()


@pytest.fixture
async def server(socket_dir: Path, attacher: RecordingAttacher) -> AsyncIterator[AttachServer]:
    server = AttachServer(attacher, socket_dir / "attach.sock")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def container() -> Iterator[subprocess.Popen[bytes]]:
    """A real process standing in for the container's init process."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def oci_state(pid: int, **extra: Any) -> bytes:
    state = {
        "ociVersion": "1.2.0",
        "id": "ctr-0123",
        "status": "creating",
        "pid": pid,
        "bundle": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/ctr-0123",
        "annotations": {
            "io.kubernetes.cri.sandbox-namespace": "ns1",
            "io.kubernetes.cri.sandbox-name": "pod-a",
        },
    }
    state.update(extra)
    return json.dumps(state).encode()


async def run_hook(argv: list[str], stdin: bytes) -> tuple[int, str]:
    """Run a command without blocking the loop the attach server lives on."""
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing; fix: pip install -e . in the repo's venv")
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate(stdin)
    assert stdout == b"", "the hook prints nothing on stdout"
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def hook_argv(socket_path: Path, *extra: str) -> list[str]:
    return [
        str(SCRIPT),
        "hook",
        "--claim-uid",
        UID,
        "--attach-socket",
        str(socket_path),
        *extra,
    ]


async def test_hook_sends_the_containers_netns_to_the_agent(
    server: AttachServer, attacher: RecordingAttacher, container: subprocess.Popen[bytes]
) -> None:
    code, stderr = await run_hook(hook_argv(server.socket_path), oci_state(container.pid))

    assert (code, stderr) == (0, "")
    assert attacher.requests == [
        AttachRequest(
            claim_uid=UID,
            pid=container.pid,
            netns=f"/proc/{container.pid}/ns/net",
            netns_id=os.readlink(f"/proc/{container.pid}/ns/net"),
            container_id="ctr-0123",
            bundle="/run/containerd/io.containerd.runtime.v2.task/k8s.io/ctr-0123",
            annotations={
                "io.kubernetes.cri.sandbox-namespace": "ns1",
                "io.kubernetes.cri.sandbox-name": "pod-a",
            },
        )
    ]
    assert attacher.requests[0].netns_id.startswith("net:[")


async def test_hook_runs_exactly_as_the_cdi_spec_says(
    server: AttachServer, attacher: RecordingAttacher, container: subprocess.Popen[bytes]
) -> None:
    hook = CdiHook(path=str(SCRIPT), attach_socket=str(server.socket_path))
    spec = build_claim_spec(
        UID, [CdiVf(device_name="0000-08-00-2", pci_address="0000:08:00.2", if_name="net1")], hook
    )
    entry = spec["containerEdits"]["hooks"][0]
    assert entry["hookName"] == "createRuntime"

    # runc execs `path` with `args` as argv (args[0] is the program name).
    code, stderr = await run_hook([entry["path"], *entry["args"][1:]], oci_state(container.pid))

    assert (code, stderr) == (0, "")
    assert [r.claim_uid for r in attacher.requests] == [UID]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            NadNotFound(
                "NetworkAttachmentDefinition ns1/vlan100 not found",
                field="spec.devices.config[0].opaque.parameters.netAttachDefName",
                fix="create the NAD",
            ),
            "spec.devices.config[0].opaque.parameters.netAttachDefName: "
            "NetworkAttachmentDefinition ns1/vlan100 not found; fix: create the NAD",
        ),
        (
            RuntimeError("host-local exited 1"),
            f"internal error attaching claim {UID}: RuntimeError: host-local exited 1",
        ),
    ],
    ids=["sriov-dra-error", "unexpected-error"],
)
async def test_agent_error_fails_the_hook_with_the_agents_message(
    server: AttachServer,
    attacher: RecordingAttacher,
    container: subprocess.Popen[bytes],
    error: Exception,
    reason: str,
) -> None:
    attacher.error = error

    code, stderr = await run_hook(hook_argv(server.socket_path), oci_state(container.pid))

    assert code == 1
    assert stderr == (f"sriov-dra hook: claim {UID}, container ctr-0123: attach failed: {reason}\n")


async def test_no_agent_listening_fails_with_the_fix(
    socket_dir: Path, container: subprocess.Popen[bytes]
) -> None:
    missing = socket_dir / "attach.sock"

    code, stderr = await run_hook(hook_argv(missing), oci_state(container.pid))

    assert code == 1
    assert stderr == (
        f"sriov-dra hook: claim {UID}, container ctr-0123: attach failed: {missing}: "
        "cannot talk to the agent: No such file or directory; fix: check that the sriov-dra "
        f"agent runs on this node and listens on {missing}\n"
    )


async def test_silent_agent_times_out_with_a_message(
    socket_dir: Path, container: subprocess.Popen[bytes]
) -> None:
    path = socket_dir / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)

        code, stderr = await run_hook(hook_argv(path, "--timeout", "0.5"), oci_state(container.pid))

    assert code == 1
    assert stderr.endswith(
        f"attach failed: {path}: no answer from the agent within 0.5 s; fix: check that the "
        f"sriov-dra agent runs on this node and listens on {path}\n"
    )


FIX_RUNTIME = "run this hook from an OCI runtime as a createRuntime hook (state JSON on stdin)"


@pytest.mark.parametrize(
    ("stdin", "problem"),
    [
        (b"not json", "stdin: stdin is not JSON (Expecting value: line 1 column 1 (char 0))"),
        (b"[1]", "stdin: stdin is a JSON list, not the OCI state object"),
        (b'{"id": "c"}', "pid: must be a positive integer, got None"),
        (b'{"id": "c", "pid": "12"}', "pid: must be a positive integer, got '12'"),
        (b'{"id": "c", "pid": 0}', "pid: must be a positive integer, got 0"),
        (b'{"pid": 1}', "id: must be a non-empty string, got None"),
        (
            b'{"id": "c", "pid": 1, "annotations": ["x"]}',
            "bundle: bundle must be a string and annotations an object",
        ),
    ],
    ids=["not-json", "not-object", "no-pid", "string-pid", "zero-pid", "no-id", "bad-annotations"],
)
async def test_unusable_oci_state_exits_2(socket_dir: Path, stdin: bytes, problem: str) -> None:
    code, stderr = await run_hook(hook_argv(socket_dir / "attach.sock"), stdin)

    assert code == 2
    assert stderr == (
        f"sriov-dra hook: claim {UID}: invalid OCI state: {problem}; fix: {FIX_RUNTIME}\n"
    )


async def test_dead_container_process_exits_2(socket_dir: Path) -> None:
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()

    code, stderr = await run_hook(hook_argv(socket_dir / "attach.sock"), oci_state(process.pid))

    assert code == 2
    assert stderr == (
        f"sriov-dra hook: claim {UID}: invalid OCI state: pid: container process {process.pid} "
        f"has no network namespace at /proc/{process.pid}/ns/net (No such file or directory); "
        "fix: the container's init process must be alive while createRuntime hooks run\n"
    )


def test_hook_imports_nothing_heavy() -> None:
    code = (
        "import sys, sriov_dra.cli, sriov_dra_agent.attach.hook;"
        "heavy = {'asyncio', 'grpc', 'pydantic', 'pyroute2', 'kopf', 'kubernetes_asyncio'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
