"""The manifests' RBAC is what the operator and agents run with; each rule tested is needed.

The stack runs on a dev cluster of its own, the operator and the agents
authenticated with TokenRequest tokens of the manifests' ServiceAccounts (see
``sriov_dra_devcluster.stack``). Each case removes one verb from one rule of a
ClusterRole in ``manifests/``, creates a claim, and shows the failure where an
operator would look: the process's log names the claim and carries the API
server's "forbidden" message, and the effect the rule exists for does not
happen. Restoring the manifest's rule lets the same claim proceed, so the
missing verb, and nothing else, was the cause.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sriov_dra.constants import ALLOCATED_CONDITION
from sriov_dra.errors import SriovDraError
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.stack import MANIFESTS, Stack
from sriov_dra_devcluster.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests" / "examples" / "resourceclaim-vf.yaml"


def _allocated(claim: dict[str, Any]) -> bool:
    return bool(claim.get("status", {}).get("allocation"))


def _devices_reported(claim: dict[str, Any]) -> bool:
    """The agent's report: a ``status.devices`` condition other than the operator's
    ``Allocated``, which the operator writes with the allocation itself."""
    return any(
        condition.get("type") != ALLOCATED_CONDITION
        for device in claim.get("status", {}).get("devices") or []
        for condition in device.get("conditions") or []
    )


@dataclass(frozen=True)
class Case:
    manifest: str
    role: str
    resource: str
    verb: str
    logs: tuple[str, ...]
    """Log files (without .log) of the processes that use the role."""
    effect: Callable[[dict[str, Any]], bool]
    """What the rule makes happen to the claim."""


CASES = [
    pytest.param(
        Case(
            "rbac-operator.yaml",
            "sriov-dra-operator",
            "resourceclaims/status",
            "patch",
            ("operator",),
            _allocated,
        ),
        id="operator-cannot-write-status.allocation",
    ),
    pytest.param(
        Case(
            "rbac-operator.yaml",
            "sriov-dra-operator",
            "resourceclaims",
            "patch",
            ("operator",),
            _allocated,
        ),
        id="operator-cannot-add-its-finalizer-label-annotation",
    ),
    pytest.param(
        Case(
            "rbac-agent.yaml",
            "sriov-dra-agent",
            "resourceclaims/status",
            "patch",
            ("agent-sim-node-1", "agent-sim-node-2"),
            _devices_reported,
        ),
        id="agent-cannot-report-status.devices",
    ),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A dev cluster and the whole stack, running with the manifests' identities."""
    if os.geteuid() != 0:
        pytest.fail("the stack builds simulated NICs: run the tests as root", pytrace=False)
    root = Path("/var/tmp/sriov-dra")
    root.mkdir(parents=True, exist_ok=True)
    cluster = DevCluster(root / f"rbac-{secrets.token_hex(3)}")
    result = Stack(cluster, vfs_per_node=2)
    try:
        cluster.up(nodes=2, log=lambda _msg: None)
        result.up(log=lambda _msg: None)
    except SriovDraError as exc:
        result.down(log=lambda _msg: None)
        cluster.down(log=lambda _msg: None)
        pytest.fail(f"the stack did not start:\n{exc.describe()}", pytrace=False)
    try:
        yield result
    finally:
        result.down(log=lambda _msg: None)
        cluster.down(log=lambda _msg: None)
        shutil.rmtree(cluster.state_dir, ignore_errors=True)


def role_without(manifest: str, role: str, resource: str, verb: str) -> dict[str, Any]:
    """The ClusterRole ``role`` of ``manifests/<manifest>`` minus ``verb`` on ``resource``."""
    docs = [d for d in yaml.safe_load_all((MANIFESTS / manifest).read_text()) if d]
    [document] = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role]
    rules = []
    removed = False
    for rule in document["rules"]:
        if resource in rule["resources"] and verb in rule["verbs"]:
            removed = True
            rest = [r for r in rule["resources"] if r != resource]
            if rest:
                rules.append({**rule, "resources": rest})
            verbs = [v for v in rule["verbs"] if v != verb]
            if verbs:
                rules.append({**rule, "resources": [resource], "verbs": verbs})
        else:
            rules.append(rule)
    assert removed, f"{manifest} has no rule granting {verb} on {resource}"
    return {**document, "rules": rules}


def example_claim(namespace: str) -> str:
    """The seed's NAD and ResourceClaim, in ``namespace`` (no pod: the operator allocates)."""
    docs = [
        d
        for d in yaml.safe_load_all(EXAMPLE.read_text())
        if d and d["kind"] in ("NetworkAttachmentDefinition", "ResourceClaim")
    ]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(docs)


def forbidden_lines(log_file: Path, offset: int, needle: str) -> list[str]:
    """Log lines after ``offset`` that contain ``needle`` once JSON escaping is undone."""
    text = log_file.read_text(errors="replace")[offset:]
    return [line for line in text.splitlines() if needle in line.replace("\\", "")]


@pytest.mark.parametrize("case", CASES)
def test_removing_a_needed_rule_fails_visibly_and_restoring_it_recovers(
    stack: Stack, case: Case
) -> None:
    cluster = stack.cluster
    namespace = f"rbac-{secrets.token_hex(3)}"
    logs = [cluster.log_dir / f"{name}.log" for name in case.logs]
    offsets = {log: log.stat().st_size for log in logs}
    reduced = role_without(case.manifest, case.role, case.resource, case.verb)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(reduced))
    try:
        cluster.kubectl("create", "namespace", namespace)
        cluster.kubectl("apply", "-f", "-", input=example_claim(namespace))
        needle = (
            f'"static-vf-claim" is forbidden: User "system:serviceaccount:sriov-dra:{case.role}" '
            f'cannot {case.verb} resource "{case.resource}" in API group "resource.k8s.io" '
            f'in the namespace "{namespace}"'
        )

        lines = wait_until(
            lambda: [line for log in logs for line in forbidden_lines(log, offsets[log], needle)],
            timeout=60,
            what=f"{', '.join(case.logs)} to log the forbidden {case.verb} on {case.resource}",
        )

        assert any(f"{namespace}/static-vf-claim" in line for line in lines)
        claim = cluster.kubectl_json("get", "resourceclaim", "static-vf-claim", "-n", namespace)
        assert not case.effect(claim)
    finally:
        cluster.kubectl("apply", "-f", str(MANIFESTS / case.manifest))
    wait_until(
        lambda: case.effect(
            cluster.kubectl_json("get", "resourceclaim", "static-vf-claim", "-n", namespace)
        ),
        timeout=90,
        what="the claim to proceed once the manifest's rule is back",
    )
    cluster.kubectl("delete", "namespace", namespace, "--timeout=120s")
