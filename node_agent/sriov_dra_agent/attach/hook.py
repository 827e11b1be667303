"""``sriov-dra hook``: the OCI createRuntime hook that CDI adds for a claim.

The container runtime runs it in the host namespaces with the container's
state on stdin (``{ociVersion, id, status, pid, bundle, annotations}``); it
resolves the pod's network namespace from the PID and asks the agent, over the
attach socket, to move the claim's VFs in. A non-zero exit fails the
container's creation, with our stderr as the reason.

Exit codes: 0 attached; 1 the agent reported an error or could not be reached;
2 the OCI state on stdin is unusable.

It runs once per container start, so it imports only the standard library
and the light protocol module (no asyncio, grpc, pydantic or pyroute2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Final

from sriov_dra.errors import SriovDraError

from sriov_dra_agent.attach.attach_socket import (
    DEFAULT_ATTACH_SOCKET,
    AttachRequest,
    request_attach,
)

MAX_STATE_BYTES: Final = 1 << 20
DEFAULT_TIMEOUT_SECONDS: Final = 28.0
EXIT_ATTACH_FAILED: Final = 1
EXIT_BAD_STATE: Final = 2


class InvalidOciState(SriovDraError):
    """The runtime's state JSON lacks what the hook needs. Permanent."""

    reason = "InvalidOciState"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``sriov-dra hook`` (the CDI spec's hook args set them)."""
    parser.add_argument("--claim-uid", required=True, help="UID of the ResourceClaim to attach")
    parser.add_argument(
        "--attach-socket",
        default=DEFAULT_ATTACH_SOCKET,
        help=f"the agent's attach socket (default {DEFAULT_ATTACH_SOCKET})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for the agent (keep below the CDI hook timeout)",
    )


def parse_oci_state(data: bytes, *, claim_uid: str) -> AttachRequest:
    """Build the attach request from the OCI state JSON; InvalidOciState says what is wrong."""
    fix = "run this hook from an OCI runtime as a createRuntime hook (state JSON on stdin)"
    try:
        state: Any = json.loads(data)
    except ValueError as exc:
        raise InvalidOciState(f"stdin is not JSON ({exc})", field="stdin", fix=fix) from exc
    if not isinstance(state, dict):
        raise InvalidOciState(
            f"stdin is a JSON {type(state).__name__}, not the OCI state object",
            field="stdin",
            fix=fix,
        )
    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InvalidOciState(f"must be a positive integer, got {pid!r}", field="pid", fix=fix)
    container_id = state.get("id")
    if not isinstance(container_id, str) or not container_id:
        raise InvalidOciState(
            f"must be a non-empty string, got {container_id!r}", field="id", fix=fix
        )
    bundle = state.get("bundle", "")
    annotations = state.get("annotations") or {}
    if not isinstance(bundle, str) or not isinstance(annotations, dict):
        raise InvalidOciState(
            "bundle must be a string and annotations an object", field="bundle", fix=fix
        )
    netns = f"/proc/{pid}/ns/net"
    try:
        netns_id = os.readlink(netns)
    except OSError as exc:
        raise InvalidOciState(
            f"container process {pid} has no network namespace at {netns} ({exc.strerror})",
            field="pid",
            fix="the container's init process must be alive while createRuntime hooks run",
        ) from exc
    return AttachRequest(
        claim_uid=claim_uid,
        pid=pid,
        netns=netns,
        netns_id=netns_id,
        container_id=container_id,
        bundle=bundle,
        annotations={str(k): str(v) for k, v in annotations.items()},
    )


def run(args: argparse.Namespace) -> int:
    """Read the OCI state from stdin and have the agent attach ``--claim-uid``."""
    prefix = f"sriov-dra hook: claim {args.claim_uid}"
    try:
        request = parse_oci_state(sys.stdin.buffer.read(MAX_STATE_BYTES), claim_uid=args.claim_uid)
    except InvalidOciState as exc:
        print(f"{prefix}: invalid OCI state: {exc.describe()}", file=sys.stderr)
        return EXIT_BAD_STATE
    try:
        request_attach(args.attach_socket, request, timeout=args.timeout)
    except SriovDraError as exc:
        print(
            f"{prefix}, container {request.container_id}: attach failed: {exc.describe()}",
            file=sys.stderr,
        )
        return EXIT_ATTACH_FAILED
    return 0
