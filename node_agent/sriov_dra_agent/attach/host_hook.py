"""The host-side CDI hook: a shell script the agent writes on start-up (``--install-hook``).

A container runtime runs a CDI ``createRuntime`` hook on the host, where the
agent's image (Python, the ``sriov-dra`` package) is not installed. So the agent
writes this small script to a host path (its kubelet plugin directory, a
hostPath mount) and puts that path into the CDI specs. The script enters the
agent container's *mount* namespace with ``nsenter`` and runs ``sriov-dra hook``
there, with the runtime's arguments and stdin (the OCI state) unchanged. It
stays in the host's PID namespace, and the agent runs with ``hostPID``, so the
state's ``pid`` and ``/proc/<pid>/ns/net`` mean the same inside.

The script names the agent by PID *and* start time (``/proc/<pid>/stat`` field
22): a PID reused after the agent died is not mistaken for it; instead the hook
fails at once with a message naming the fix. The host needs ``/bin/sh`` and
``nsenter`` (util-linux) only.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Final

from sriov_dra.errors import SriovDraError

from sriov_dra_agent.atomic_file import write_atomically

SCRIPT_MODE: Final = 0o755


class HostHookError(SriovDraError):
    """The host hook could not be written. Permanent until the flag or mount is fixed."""

    reason = "HostHookNotInstalled"


def process_start_time(stat_line: str) -> int:
    """Field 22 (``starttime``, clock ticks since boot) of a ``/proc/<pid>/stat`` line.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ``)``.
    """
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(fields[19])


def render_host_hook(*, agent_pid: int, agent_start_time: int, executable: str) -> str:
    """The script: check the agent is the same process, then run its hook in its mount ns."""
    exe = shlex.quote(executable)
    return f"""#!/bin/sh
# sriov-dra CDI createRuntime hook, written by the sriov-dra agent (pid {agent_pid}) at
# start-up and rewritten at every start. The container runtime runs it on the host,
# where sriov-dra is not installed: it runs `sriov-dra hook` in the agent container's
# mount namespace (host PID and network namespaces unchanged; the agent has hostPID).
agent_pid={agent_pid}
agent_start_time={agent_start_time}
start_time() {{
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    set -- ${{stat##*) }}
    shift 19
    echo "$1"
}}
if [ "$(start_time "$agent_pid")" != "$agent_start_time" ]; then
    echo "sriov-dra hook: the sriov-dra agent that wrote $0 (pid $agent_pid)" \\
        "is not running; fix: check the sriov-dra-agent pod on this node" \\
        "(kubectl -n sriov-dra get pods -o wide)" >&2
    exit 1
fi
exec nsenter --target "$agent_pid" --mount -- {exe} "$@"
"""


def install_host_hook(path: Path, *, executable: str) -> str:
    """Write the script for this process to ``path`` atomically; returns its text.

    A new inode by rename: a runtime may be running the previous script right now.
    """
    pid = os.getpid()
    try:
        start = process_start_time(Path(f"/proc/{pid}/stat").read_text())
        script = render_host_hook(agent_pid=pid, agent_start_time=start, executable=executable)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, script.encode(), mode=SCRIPT_MODE)
    except OSError as exc:
        raise HostHookError(
            f"cannot write the host hook {path}: {exc}",
            field="--hook-path",
            fix="point --hook-path at a writable hostPath mount "
            "(the DaemonSet uses the kubelet plugins directory)",
        ) from exc
    return script
