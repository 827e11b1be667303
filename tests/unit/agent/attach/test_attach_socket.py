"""The agent's attach socket: protocol answers, per-claim serialization, socket hygiene."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sriov_dra_agent.attach.attach_socket import (
    MAX_MESSAGE_BYTES,
    AttachFailed,
    AttachRequest,
    AttachResult,
    AttachServer,
    request_attach,
)
from sriov_dra_agent.cluster.claim_locks import ClaimLocks


class GatedAttacher:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def attach(self, request: AttachRequest) -> AttachResult:
        self.events.append(("enter", request.container_id))
        gate = self.gates.get(request.container_id)
        if gate is not None:
            await gate.wait()
        self.events.append(("exit", request.container_id))
        return AttachResult(interfaces=("net1", "net2"), message="attached 2 VFs")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield root
    shutil.rmtree(root)


@pytest.fixture
def attacher() -> GatedAttacher:
    return GatedAttacher()


@pytest.fixture
def locks() -> ClaimLocks:
    return ClaimLocks()


@pytest.fixture
async def server(
    socket_dir: Path, attacher: GatedAttacher, locks: ClaimLocks
) -> AsyncIterator[AttachServer]:
    server = AttachServer(attacher, socket_dir / "attach.sock", locks=locks)
    await server.start()
    yield server
    for gate in attacher.gates.values():
        gate.set()
    await server.stop()


def request(container: str = "ctr-1", uid: str = "u1") -> AttachRequest:
    return AttachRequest(
        claim_uid=uid,
        pid=4242,
        netns="/proc/4242/ns/net",
        netns_id="net:[4026532100]",
        container_id=container,
        bundle="/run/bundle",
        annotations={"io.kubernetes.pod.name": "pod-a"},
    )


async def exchange(path: Path, payload: bytes) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    answer: dict[str, object] = json.loads(line)
    return answer


def message(**overrides: object) -> bytes:
    body = request().to_message()
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode() + b"\n"


async def test_successful_attach_round_trip(server: AttachServer) -> None:
    result = await asyncio.to_thread(request_attach, str(server.socket_path), request(), timeout=10)
    assert result == AttachResult(interfaces=("net1", "net2"), message="attached 2 VFs")


def test_request_message_round_trips() -> None:
    assert AttachRequest.from_message(request().to_message()) == request()
    assert request().to_message()["op"] == "attach"
    assert request().to_message()["version"] == 1


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{oops\n", "request is not JSON: Expecting property name enclosed in double quotes"),
        (b"[]\n", "request must be a JSON object, got list"),
        (
            message(version=2),
            "protocol version 2 is not supported (this agent speaks 1); fix: use the sriov-dra "
            "hook of the same release as the agent",
        ),
        (message(op="detach"), "unknown op 'detach'; supported: attach"),
        (
            message(pid=None),
            "invalid attach request: pid: must be a positive integer, got None; fix: pass the "
            "container's host PID from the OCI state",
        ),
        (
            message(claimUid=""),
            "invalid attach request: claimUid: must be a non-empty string, got ''; fix: send "
            "the request the sriov-dra hook builds",
        ),
        (
            message(annotations={"a": 1}),
            "invalid attach request: annotations: must map strings to strings, got {'a': 1}; "
            "fix: pass the OCI state's annotations unchanged",
        ),
        (b"x" * (MAX_MESSAGE_BYTES + 10) + b"\n", "request longer than 65536 bytes"),
    ],
    ids=[
        "not-json",
        "not-object",
        "wrong-version",
        "unknown-op",
        "no-pid",
        "empty-uid",
        "bad-annotations",
        "too-long",
    ],
)
async def test_bad_requests_get_an_error_answer(
    server: AttachServer, attacher: GatedAttacher, payload: bytes, error: str
) -> None:
    answer = await exchange(server.socket_path, payload)

    assert answer["ok"] is False
    assert str(answer["error"]).startswith(error), answer["error"]
    assert attacher.events == []


async def test_client_sees_agent_errors_as_attach_failed(
    server: AttachServer,
) -> None:
    with pytest.raises(AttachFailed) as err:
        await asyncio.to_thread(
            request_attach,
            str(server.socket_path),
            AttachRequest(claim_uid="u1", pid=1, netns="", container_id="c", bundle=""),
            timeout=10,
        )
    assert err.value.describe() == (
        "invalid attach request: netns: must be a non-empty string, got ''; "
        "fix: send the request the sriov-dra hook builds"
    )


async def wait_for(predicate: object, what: str) -> None:
    async def poll() -> None:
        # The condition is internal to the server under test, which has no event to await.
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout=10)
    except TimeoutError:
        pytest.fail(f"gave up waiting for {what}")


async def test_attaches_of_one_claim_are_serialized_with_the_shared_locks(
    server: AttachServer, attacher: GatedAttacher, locks: ClaimLocks
) -> None:
    attacher.gates["ctr-1"] = asyncio.Event()
    first = asyncio.create_task(exchange(server.socket_path, message(containerId="ctr-1")))
    await wait_for(lambda: attacher.events == [("enter", "ctr-1")], "the first attach")

    second = asyncio.create_task(exchange(server.socket_path, message(containerId="ctr-2")))
    await wait_for(lambda: locks.users("u1") == 2, "the second attach to queue")
    assert attacher.events == [("enter", "ctr-1")]

    attacher.gates["ctr-1"].set()
    answers = await asyncio.gather(first, second)

    assert [a["ok"] for a in answers] == [True, True]
    assert attacher.events == [
        ("enter", "ctr-1"),
        ("exit", "ctr-1"),
        ("enter", "ctr-2"),
        ("exit", "ctr-2"),
    ]


async def test_attach_waits_for_other_work_holding_the_claim_lock(
    server: AttachServer, attacher: GatedAttacher, locks: ClaimLocks
) -> None:
    async with locks.hold("u1"):  # e.g. a NodeUnprepareResources of the kubelet plugin
        pending = asyncio.create_task(exchange(server.socket_path, message()))
        await wait_for(lambda: locks.users("u1") == 2, "the attach to queue")
        assert attacher.events == []
    assert (await pending)["ok"] is True
    assert attacher.events == [("enter", "ctr-1"), ("exit", "ctr-1")]


async def test_attach_finishes_even_if_the_hook_goes_away(
    server: AttachServer, attacher: GatedAttacher
) -> None:
    attacher.gates["ctr-1"] = asyncio.Event()
    _, writer = await asyncio.open_unix_connection(str(server.socket_path))
    writer.write(message())
    await writer.drain()
    await wait_for(lambda: attacher.events == [("enter", "ctr-1")], "the attach to start")
    writer.close()
    await writer.wait_closed()

    attacher.gates["ctr-1"].set()
    await wait_for(lambda: ("exit", "ctr-1") in attacher.events, "the attach to finish")


async def test_socket_is_private_replaces_a_stale_one_and_is_removed_on_stop(
    socket_dir: Path, attacher: GatedAttacher
) -> None:
    path = socket_dir / "attach.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))
    server = AttachServer(attacher, path)
    await server.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        answer = await exchange(path, message())
        assert answer == {"ok": True, "interfaces": ["net1", "net2"], "message": "attached 2 VFs"}
    finally:
        await server.stop()
    assert not path.exists()


async def test_answer_goes_out_before_the_after_reply_work_which_keeps_the_lock(
    socket_dir: Path, locks: ClaimLocks
) -> None:
    report_gate = asyncio.Event()
    reported: list[str] = []

    class ReportingAttacher:
        async def attach(self, request: AttachRequest) -> AttachResult:
            async def report() -> None:
                await report_gate.wait()  # e.g. a slow status PATCH
                reported.append(request.container_id)

            return AttachResult(interfaces=("net1",), message="ok", after_reply=report)

    server = AttachServer(ReportingAttacher(), socket_dir / "attach.sock", locks=locks)
    await server.start()
    try:
        answer = await asyncio.wait_for(exchange(server.socket_path, message()), timeout=10)
        assert answer["ok"] is True
        assert reported == []
        # Work that comes next for the claim (an unprepare) waits for the report.
        unprepare = asyncio.create_task(asyncio.wait_for(hold_briefly(locks, "u1"), 10))
        await wait_for(lambda: locks.users("u1") == 2, "the unprepare to queue")
        report_gate.set()
        await unprepare
        assert reported == ["ctr-1"]
    finally:
        report_gate.set()
        await server.stop()


async def hold_briefly(locks: ClaimLocks, uid: str) -> None:
    async with locks.hold(uid):
        pass
