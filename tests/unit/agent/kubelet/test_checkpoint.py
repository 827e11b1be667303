"""The agent's checkpoint: round trip, atomic replacement, corrupt files are errors."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError
from sriov_dra_agent.kubelet.checkpoint import (
    Checkpoint,
    CheckpointCorrupt,
    ClaimRecord,
    DeviceRecord,
    load_checkpoint,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[4]
FIX = (
    "inspect the file; if it cannot be repaired, move it aside and restart the agent, "
    "whose start-up sweep then rebuilds the node state from the cluster and the kernel"
)


def claim(uid: str, *devices: str, pad: int = 0) -> ClaimRecord:
    return ClaimRecord(
        uid=uid,
        namespace="ns1",
        name=f"claim-{uid}",
        devices=tuple(
            DeviceRecord(
                pool_name="node-a",
                device_name=d,
                request_names=("vf",),
                cdi_device_ids=(f"sriovnetwork.k8snetworkplumbingwg.io/vf={uid}-{d}",),
                pci_address="0000:08:00.2",
                if_name="net1",
                original_state={"mac": "02:00:00:00:00:01", "vlan": 0, "trust": False},
            )
            for d in devices
        ),
        attach={"netnsId": "net:[4026532000]", "ips": ["10.1.0.5/24"], "pad": "x" * pad},
    )


def test_missing_file_is_an_empty_checkpoint(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "checkpoint.json") == Checkpoint()


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "plugins" / "checkpoint.json"
    checkpoint = Checkpoint().with_claim(claim("u1", "0000-08-00-2")).with_claim(claim("u2"))

    save_checkpoint(path, checkpoint)

    assert load_checkpoint(path) == checkpoint
    assert load_checkpoint(path).claims["u1"].devices[0].original_state["mac"] == (
        "02:00:00:00:00:01"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.json"]


def test_with_without_and_claim_holding() -> None:
    checkpoint = Checkpoint().with_claim(claim("u1", "0000-08-00-2", "0000-08-00-3"))
    checkpoint = checkpoint.with_claim(claim("u2", "0000-08-00-4"))

    holder = checkpoint.claim_holding("node-a", "0000-08-00-3")
    assert holder is not None and holder.uid == "u1"
    assert checkpoint.claim_holding("node-b", "0000-08-00-3") is None

    smaller = checkpoint.without_claim("u1")
    assert sorted(smaller.claims) == ["u2"]
    assert sorted(checkpoint.claims) == ["u1", "u2"], "the original is unchanged"
    assert smaller.without_claim("absent") == smaller


def test_claims_must_be_keyed_by_their_uid() -> None:
    with pytest.raises(ValidationError, match=r"claims\['u9'\] holds the record of claim uid 'u1'"):
        Checkpoint(claims={"u9": claim("u1")})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"version": 1, "claims": {', "checkpoint is not valid JSON (Expecting property name"),
        (b"\xff\xfe", "checkpoint is not valid JSON ("),
        (b"[]", "checkpoint is a JSON list, not an object"),
        (b'{"claims": {}}', "checkpoint has no integer version (found None)"),
        (b'{"version": "1", "claims": {}}', "checkpoint has no integer version (found '1')"),
        (b'{"version": 0, "claims": {}}', "checkpoint version 0 does not exist"),
        (
            b'{"version": 2, "claims": {}}',
            "checkpoint version 2 was written by a newer agent (this one reads up to 1)",
        ),
        (b'{"version": 1, "claims": []}', "checkpoint does not match version 1: 1 validation"),
        (
            b'{"version": 1, "claims": {}, "extra": 1}',
            "checkpoint does not match version 1: 1 validation",
        ),
        (b"", "checkpoint is not valid JSON (Expecting value"),
    ],
    ids=[
        "truncated",
        "not-utf8",
        "not-object",
        "no-version",
        "string-version",
        "version-0",
        "newer-version",
        "claims-not-map",
        "unknown-field",
        "empty-file",
    ],
)
def test_corrupt_file_is_a_clear_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_bytes(content)

    with pytest.raises(CheckpointCorrupt) as err:
        load_checkpoint(path)

    assert err.value.field == str(path)
    assert err.value.fix == FIX
    assert err.value.message.startswith(problem), err.value.message


def _python(code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_failed_write_keeps_the_old_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    old = Checkpoint().with_claim(claim("u1", "0000-08-00-2"))
    save_checkpoint(path, old)
    limit = path.stat().st_size + 512

    def limit_file_size() -> None:
        # The kernel refuses writes past the limit (EFBIG) instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = _python(
        f"""
        from pathlib import Path
        from sriov_dra_agent.kubelet.checkpoint import Checkpoint, ClaimRecord, save_checkpoint
        big = ClaimRecord(uid="u2", namespace="ns1", name="c2", attach={{"pad": "x" * 100000}})
        save_checkpoint(Path({str(path)!r}), Checkpoint().with_claim(big))
        """,
        preexec_fn=limit_file_size,
    )

    assert result.returncode == 1
    assert "OSError: [Errno 27] File too large" in result.stderr
    assert load_checkpoint(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    small = Checkpoint().with_claim(claim("u1", "0000-08-00-2"))
    large = small.with_claim(claim("u2", "0000-08-00-3", pad=200_000))
    save_checkpoint(path, small)
    save_checkpoint(tmp_path / "small.json", small)
    save_checkpoint(tmp_path / "large.json", large)
    writes = 150
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                from pathlib import Path
                from sriov_dra_agent.kubelet.checkpoint import load_checkpoint, save_checkpoint
                import sys
                small, large = (load_checkpoint(Path(p)) for p in sys.argv[1:3])
                for i in range({writes}):
                    save_checkpoint(Path({str(path)!r}), large if i % 2 == 0 else small)
                """
            ),
            str(tmp_path / "small.json"),
            str(tmp_path / "large.json"),
        ],
        cwd=ROOT,
    )
    seen = {"small": 0, "large": 0}
    try:
        while writer.poll() is None:
            current = load_checkpoint(path)
            assert current in (small, large)
            seen["small" if current == small else "large"] += 1
    finally:
        writer.wait()
    assert writer.returncode == 0
    assert seen["small"] + seen["large"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.json",
        "large.json",
        "small.json",
    ]
