"""The dev cluster's pure parts: flags, PKI, kubeconfigs, node shapes, errors. No cluster."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from sriov_dra_devcluster import certs, components, kubeconfigs, processes
from sriov_dra_devcluster.binaries import BIN_ENV, find_bin_dir
from sriov_dra_devcluster.errors import BinariesMissing, ComponentFailed
from sriov_dra_devcluster.kwok_nodes import node_is_ready, node_manifest, node_names_for
from sriov_dra_devcluster.waiting import WaitTimeout, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _files(tmp: Path) -> components.Files:
    return components.Files(
        state_dir=tmp,
        ca_cert=tmp / "ca.crt",
        ca_key=tmp / "ca.key",
        serving_cert=tmp / "apiserver.crt",
        serving_key=tmp / "apiserver.key",
        sa_key=tmp / "sa.key",
        sa_pub=tmp / "sa.pub",
        controller_manager_kubeconfig=tmp / "kcm.kubeconfig",
        scheduler_kubeconfig=tmp / "sched.kubeconfig",
        kwok_kubeconfig=tmp / "kwok.kubeconfig",
    )


def test_every_component_listens_on_loopback_only(tmp_path: Path) -> None:
    ports = components.Ports.pick()
    specs = components.component_specs(Path("/bin-dir"), _files(tmp_path), ports)
    assert list(specs) == list(components.START_ORDER)
    assert len({spec.port for spec in specs.values()} | {ports.etcd_peer}) == 6
    for spec in specs.values():
        args = " ".join(spec.argv)
        assert "0.0.0.0" not in args, spec.name
        assert spec.health_url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")), spec.name
        assert spec.argv[0] == f"/bin-dir/{spec.name}"


@pytest.mark.parametrize(
    ("component", "flag"),
    [
        ("kube-apiserver", "--authorization-mode=Node,RBAC"),
        ("kube-apiserver", "--bind-address=127.0.0.1"),
        ("kube-apiserver", "--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
        ("kube-controller-manager", "--leader-elect=false"),
        ("kube-controller-manager", "--controllers=*"),
        ("kube-scheduler", "--bind-address=127.0.0.1"),
        ("kwok", "--manage-all-nodes=false"),
        ("kwok", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake"),
        ("etcd", "--unsafe-no-fsync"),
    ],
    ids=lambda v: v,
)
def test_component_flags(tmp_path: Path, component: str, flag: str) -> None:
    specs = components.component_specs(Path("/b"), _files(tmp_path), components.Ports.pick())
    assert flag in specs[component].argv


def test_kwok_plays_nodes_and_never_pods() -> None:
    stages = list(yaml.safe_load_all(components.KWOK_STAGES))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for stage in stages:
        assert stage["kind"] == "Stage"
        by_kind.setdefault(stage["spec"]["resourceRef"]["kind"], []).append(stage)
    assert [s["metadata"]["name"] for s in by_kind["Node"]] == [
        "node-initialize",
        "node-heartbeat-with-lease",
    ]
    # kwok falls back to its default pod stages when none is configured; ours never matches.
    (pod_stage,) = by_kind["Pod"]
    assert pod_stage["spec"]["selector"]["matchExpressions"] == [
        {"key": ".metadata.name", "operator": "DoesNotExist"}
    ]
    assert pod_stage["spec"]["next"] == {}


def test_pki_identities_and_chain(tmp_path: Path) -> None:
    pki = certs.create_pki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.client_cert(certs.ADMIN).read_bytes())
    admin.verify_directly_issued_by(ca)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sriov-dra-admin"
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    scheduler = x509.load_pem_x509_certificate(pki.client_cert(certs.SCHEDULER).read_bytes())
    assert scheduler.subject.rfc4514_string() == "CN=system:kube-scheduler"
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.96.0.1",
        "10.250.0.1",  # the node bridge: kubelets and kube-proxy reach the API there
    }
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"
    assert pki.service_account_pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_kubeconfig_round_trip(tmp_path: Path) -> None:
    pki = certs.create_pki(tmp_path / "pki")
    path = kubeconfigs.write_cert_kubeconfig(
        tmp_path / "kc",
        server="https://127.0.0.1:6443",
        ca_cert=pki.ca_cert,
        user="sriov-dra-admin",
        client_cert=pki.client_cert(certs.ADMIN),
        client_key=pki.client_key(certs.ADMIN),
    )
    assert kubeconfigs.server_of(path) == "https://127.0.0.1:6443"
    assert kubeconfigs.ca_of(path) == pki.ca_cert.read_bytes()
    user = yaml.safe_load(path.read_text())["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == pki.client_key(certs.ADMIN).read_bytes()
    token_path = kubeconfigs.write_token_kubeconfig(
        tmp_path / "sa", server="https://127.0.0.1:1", ca_cert=pki.ca_cert, user="sa", token="t0k"
    )
    users = yaml.safe_load(token_path.read_text())["users"]
    assert users == [{"name": "sa", "user": {"token": "t0k"}}]


def test_nodes_are_named_and_shaped_for_kwok_and_the_scheduler() -> None:
    assert node_names_for(3) == ["sim-node-1", "sim-node-2", "sim-node-3"]
    node = node_manifest("sim-node-2")
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "sim-node-2"
    assert node["status"]["allocatable"]["pods"] == "110"


_READY = {"type": "Ready", "status": "True"}
_NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("node", "ready"),
    [
        ({"status": {"conditions": [_READY]}}, True),
        ({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False),
        ({"status": {}}, False),
        (
            {
                "spec": {"taints": [_NOT_READY_TAINT]},
                "status": {"conditions": [_READY]},
            },
            False,
        ),
        (
            {
                "spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]},
                "status": {"conditions": [_READY]},
            },
            True,
        ),
    ],
    ids=["ready", "not-ready", "no-conditions", "not-ready-taint", "soft-taint-ok"],
)
def test_node_is_ready(node: dict[str, Any], ready: bool) -> None:
    assert node_is_ready(node) is ready


def test_missing_binaries_name_the_directory_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BIN_ENV, str(tmp_path))
    (tmp_path / "kubectl").write_text("")
    with pytest.raises(BinariesMissing) as info:
        find_bin_dir()
    assert str(info.value) == (
        f"{BIN_ENV}: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok"
        f" not found in {tmp_path}; fix: point {BIN_ENV} at a directory holding etcd,"
        " kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok"
    )


def test_cluster_fixture_fails_not_skips_without_binaries(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SRIOV_DRA_KUBECONFIG"}
    env[BIN_ENV] = str(tmp_path)
    out = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            "tests/integration/test_devcluster.py::test_fixture_exports_kubeconfig_and_kubectl",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout
    assert "1 error" in out.stdout
    assert "skipped" not in out.stdout
    assert "the dev cluster for integration tests is not available" in out.stdout
    assert f"not found in {tmp_path}" in out.stdout


def test_component_failure_message_leads_with_component_and_fix(tmp_path: Path) -> None:
    log = tmp_path / "kube-apiserver.log"
    err = ComponentFailed("kube-apiserver", "exited before becoming healthy", log, "E boom")
    assert str(err) == (
        "kube-apiserver exited before becoming healthy; fix: read "
        f"{log}; `sriov-dra devcluster down` cleans up before a retry\n"
        f"--- last lines of {log} ---\nE boom"
    )


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert processes.log_tail(log, lines=2) == "line 98\nline 99"
    assert processes.log_tail(tmp_path / "missing.log") == ""


def test_process_identity_survives_pid_reuse_checks() -> None:
    assert processes.process_start_ticks(os.getpid()) is not None
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert processes.process_start_ticks(proc.pid) is None


def test_wait_until_says_what_never_happened() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: None, timeout=0.05, what="the moon", interval=0.01)
    assert str(info.value) == "timed out after 0.05s waiting for the moon (last: None)"
    assert wait_until(lambda: 7, timeout=1, what="seven") == 7


def test_a_kubelet_certificate_names_its_node_for_the_node_authorizer(tmp_path: Path) -> None:
    pki = certs.create_pki(tmp_path / "pki")
    who = certs.kubelet_identity("node-7")
    certs.issue_client_cert(pki, who)
    cert = x509.load_pem_x509_certificate(pki.client_cert(who).read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
    assert cert.subject.rfc4514_string() == "CN=system:node:node-7,O=system:nodes"


def test_with_real_nodes_the_apiserver_listens_on_the_node_bridge(tmp_path: Path) -> None:
    files = _files(tmp_path)
    loopback = components.component_specs(Path("/b"), files, components.Ports.pick())
    real = components.component_specs(
        Path("/b"), files, components.Ports.pick(), node_host_ip="10.250.0.1"
    )
    assert "--endpoint-reconciler-type=none" in loopback["kube-apiserver"].argv
    argv = real["kube-apiserver"].argv
    assert "--advertise-address=10.250.0.1" in argv
    assert "--bind-address=0.0.0.0" in argv
    assert "--endpoint-reconciler-type=none" not in argv
    assert "--kubelet-preferred-address-types=InternalIP" in argv
