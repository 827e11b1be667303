"""The attach socket: how our OCI hook asks the agent to attach a claim's VFs to a pod.

Protocol: the hook connects to a unix socket, sends one JSON object on one line
and reads one JSON line back, then the connection closes.

Request: ``{"version": 1, "op": "attach", "claimUid", "pid", "netns", "netnsId",
"containerId", "bundle", "annotations"}`` where ``netns`` is ``/proc/<pid>/ns/net``
of the container's init process (host PID) and ``netnsId`` its ``readlink``
(``net:[<inode>]``), which identifies the pod's netns across the pod's containers.
Reply: ``{"ok": true, "interfaces": [...], "message": ""}`` or ``{"ok": false,
"error": "..."}``.

The server side (:class:`AttachServer`) runs in the agent and calls an
:class:`Attacher`; the client side (:func:`request_attach`) runs in the hook,
which must start fast, so this module imports asyncio only inside the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from sriov_dra.errors import SriovDraError

if TYPE_CHECKING:
    import asyncio
    from pathlib import Path

    from sriov_dra_agent.cluster.claim_locks import ClaimLocks

logger = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 1 << 16
OP_ATTACH: Final = "attach"
DEFAULT_ATTACH_SOCKET: Final = (
    "/var/lib/kubelet/plugins/sriovnetwork.k8snetworkplumbingwg.io/attach.sock"
)


class AttachProtocolError(SriovDraError):
    """A message on the attach socket is malformed. Permanent."""

    reason = "AttachProtocolError"


class AttachFailed(SriovDraError):
    """The agent tried to attach and reported an error (its message, verbatim)."""

    reason = "AttachFailed"


class AgentUnreachable(SriovDraError):
    """The hook could not get an answer from the agent (the kubelet retries the container)."""

    reason = "AgentUnreachable"


@dataclass(frozen=True)
class AttachRequest:
    """What the hook knows about the container that is being created."""

    claim_uid: str
    pid: int
    """Host PID of the container's init process."""
    netns: str
    """``/proc/<pid>/ns/net``."""
    container_id: str
    bundle: str
    netns_id: str = ""
    """``readlink`` of ``netns`` (``net:[4026532...]``), stable for the pod's lifetime."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The OCI annotations (CRI runtimes put the pod's namespace, name and UID there)."""

    def to_message(self) -> dict[str, Any]:
        """The request as sent on the socket."""
        return {
            "version": PROTOCOL_VERSION,
            "op": OP_ATTACH,
            "claimUid": self.claim_uid,
            "pid": self.pid,
            "netns": self.netns,
            "netnsId": self.netns_id,
            "containerId": self.container_id,
            "bundle": self.bundle,
            "annotations": dict(self.annotations),
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AttachRequest:
        """Parse a request; AttachProtocolError names the bad field."""

        def text(key: str, *, required: bool = True) -> str:
            value = message.get(key, "")
            if not isinstance(value, str) or (required and not value):
                raise AttachProtocolError(
                    f"must be a non-empty string, got {value!r}",
                    field=key,
                    fix="send the request the sriov-dra hook builds",
                )
            return value

        pid = message.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise AttachProtocolError(
                f"must be a positive integer, got {pid!r}",
                field="pid",
                fix="pass the container's host PID from the OCI state",
            )
        annotations = message.get("annotations", {})
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise AttachProtocolError(
                f"must map strings to strings, got {annotations!r}",
                field="annotations",
                fix="pass the OCI state's annotations unchanged",
            )
        return cls(
            claim_uid=text("claimUid"),
            pid=pid,
            netns=text("netns"),
            container_id=text("containerId"),
            bundle=text("bundle", required=False),
            netns_id=text("netnsId", required=False),
            annotations=annotations,
        )


@dataclass(frozen=True)
class AttachResult:
    """What the agent did: the interfaces now present in the pod's netns."""

    interfaces: tuple[str, ...] = ()
    message: str = ""
    after_reply: Callable[[], Awaitable[None]] | None = field(
        default=None, compare=False, repr=False
    )
    """Agent-side work the container need not wait for (the status write): the server
    runs it after the answer is on its way, still holding the claim's lock, so it is
    ordered before any later prepare, attach or unprepare of the claim."""


class Attacher(Protocol):
    """Implemented by the agent: attach a prepared claim's VFs into a container's netns.

    Called once per container that uses the claim (and again if a container is
    re-created), so it must be idempotent: a netns that already has the
    claim's interfaces is a success. Raise SriovDraError (or any exception)
    to fail the container's creation with that message.
    """

    async def attach(self, request: AttachRequest) -> AttachResult: ...


def request_attach(socket_path: str, request: AttachRequest, *, timeout: float) -> AttachResult:
    """Send ``request`` to the agent and wait for its answer (blocking; used by the hook)."""
    deadline = time.monotonic() + timeout
    payload = json.dumps(request.to_message(), separators=(",", ":")).encode() + b"\n"
    fix = f"check that the sriov-dra agent runs on this node and listens on {socket_path}"
    reply = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(socket_path)
            conn.sendall(payload)
            while not reply.endswith(b"\n") and len(reply) <= MAX_MESSAGE_BYTES:
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except TimeoutError as exc:
        raise AgentUnreachable(
            f"no answer from the agent within {timeout:g} s", field=socket_path, fix=fix
        ) from exc
    except OSError as exc:
        raise AgentUnreachable(
            f"cannot talk to the agent: {exc.strerror or exc}", field=socket_path, fix=fix
        ) from exc
    try:
        answer = json.loads(reply)
    except ValueError as exc:
        raise AgentUnreachable(
            f"the agent's answer is not JSON: {reply[:200]!r}", field=socket_path, fix=fix
        ) from exc
    if not isinstance(answer, dict):
        raise AgentUnreachable(f"unexpected answer {answer!r}", field=socket_path, fix=fix)
    if not answer.get("ok"):
        raise AttachFailed(str(answer.get("error") or "the agent gave no reason"))
    return AttachResult(
        interfaces=tuple(str(i) for i in answer.get("interfaces", ())),
        message=str(answer.get("message", "")),
    )


def _error_reply(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class AttachServer:
    """The agent's end of the attach socket.

    Attach calls for one claim are serialized with ``locks`` (share the kubelet
    plugin's so attach never overlaps prepare/unprepare of the same claim). An
    attach that started runs to completion even if the hook goes away, so a
    half-attached VF is never abandoned by a cancelled connection.
    """

    def __init__(
        self,
        attacher: Attacher,
        socket_path: Path,
        *,
        locks: ClaimLocks | None = None,
        mode: int = 0o600,
    ) -> None:
        self.socket_path = socket_path
        self._attacher = attacher
        self._locks = locks
        self._mode = mode
        self._server: asyncio.Server | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving."""
        # Imported here, not at module level, to keep the hook's start-up light.
        import asyncio

        from sriov_dra_agent.cluster.claim_locks import ClaimLocks
        from sriov_dra_agent.kubelet.socket_files import prepare_socket_path

        if self._locks is None:
            self._locks = ClaimLocks()
        prepare_socket_path(self.socket_path)
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=MAX_MESSAGE_BYTES
        )
        os.chmod(self.socket_path, self._mode)
        logger.info("attach socket listening", extra={"socket": str(self.socket_path)})

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop accepting, wait up to ``grace`` s for running attach calls, remove the socket."""
        import asyncio

        from sriov_dra_agent.kubelet.socket_files import remove_socket

        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._inflight and grace:
            _, pending = await asyncio.wait(self._inflight, timeout=grace)
            if pending:
                logger.warning(
                    "stopping with attach calls still running", extra={"tasks": len(pending)}
                )
        remove_socket(self.socket_path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await reader.readline()
            except ValueError:
                reply = _error_reply(f"request longer than {MAX_MESSAGE_BYTES} bytes")
            else:
                reply = await self._answer(line)
            writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            logger.warning("attach client went away before the answer")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError as exc:
            return _error_reply(f"request is not JSON: {exc}")
        if not isinstance(message, dict):
            return _error_reply(f"request must be a JSON object, got {type(message).__name__}")
        if message.get("version") != PROTOCOL_VERSION:
            return _error_reply(
                f"protocol version {message.get('version')!r} is not supported "
                f"(this agent speaks {PROTOCOL_VERSION}); fix: use the sriov-dra hook of the "
                "same release as the agent"
            )
        if message.get("op") != OP_ATTACH:
            return _error_reply(f"unknown op {message.get('op')!r}; supported: {OP_ATTACH}")
        try:
            request = AttachRequest.from_message(message)
        except AttachProtocolError as exc:
            return _error_reply(f"invalid attach request: {exc.describe()}")
        context = {"uid": request.claim_uid, "container": request.container_id}
        try:
            result = await self._attach_to_completion(request)
        except SriovDraError as exc:
            logger.warning("attach failed: %s", exc.describe(), extra=context)
            return _error_reply(exc.describe())
        except Exception as exc:
            logger.exception("attach failed unexpectedly", extra=context)
            return _error_reply(
                f"internal error attaching claim {request.claim_uid}: {type(exc).__name__}: {exc}"
            )
        logger.info("attached", extra={**context, "interfaces": list(result.interfaces)})
        return {"ok": True, "interfaces": list(result.interfaces), "message": result.message}

    async def _attach_to_completion(self, request: AttachRequest) -> AttachResult:
        import asyncio

        locks = self._locks
        assert locks is not None, "start() creates the locks"

        answered: asyncio.Future[AttachResult] = asyncio.get_running_loop().create_future()

        async def locked() -> None:
            async with locks.hold(request.claim_uid):
                try:
                    result = await self._attacher.attach(request)
                except Exception as exc:
                    answered.set_exception(exc)
                    return
                answered.set_result(result)
                if result.after_reply is not None:
                    await asyncio.sleep(0)  # let the handler send the answer first
                    await result.after_reply()

        task = asyncio.create_task(locked())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        # Cancelled at shutdown before it answered: the handler must not wait forever.
        task.add_done_callback(lambda _: answered.cancel())
        return await asyncio.shield(answered)
