"""The inventory page, its JSON and ``sriov-dra inventory`` on a demo-like cluster.

The operator runs as a process with the shipped RBAC (control plane and kwok nodes
only). The test publishes the VFs and plays the node agent: it reserves the seed's
claim for a pod and reports net1 in ``status.devices`` as the agent writes it. A
second claim names a NAD whose name is markup, so the operator's Warning carries
user-written HTML to the page; a real headless Chromium must load the page, show
the claim on its VF, and not run that markup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from operator_harness import (
    OperatorProcess,
    allocated_devices,
    apply,
    claim_manifest,
    load_seed,
    release_all,
    simulated_vfs,
    vfconfig,
    wait_allocated,
    wait_for_event,
)
from sriov_dra.constants import DRIVER_NAME
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

HOSTILE_NAD = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
IP, MAC = "10.0.3.7/24", "02:5a:00:00:00:07"
NET1 = {"interfaceName": "net1", "ips": [IP], "hardwareAddress": MAC}
SCREENSHOT_ENV = "SRIOV_DRA_INVENTORY_SCREENSHOT"
"""When set, the browser's screenshot is also copied there (docs/inventory.png is made so)."""


def page_json(operator: OperatorProcess, query: str = "") -> dict[str, Any]:
    url = f"http://127.0.0.1:{operator.metrics_port}/inventory.json{query}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def cli(cluster: DevCluster, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "sriov-dra"), "inventory", *args]
    return subprocess.run(
        command,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def play_agent(
    cluster: DevCluster, namespace: str, claim: dict[str, Any], nad: str
) -> tuple[str, str]:
    """Run pod0 on the claim's node and report net1 up in it (NAD ``nad``); returns
    (node, device)."""
    [(driver, pool, device)] = allocated_devices(claim)
    node = next(
        s["spec"]["nodeName"]
        for s in cluster.kubectl_json("get", "resourceslices")["items"]
        if s["spec"]["pool"]["name"] == pool
    )
    name = claim["metadata"]["name"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pod0", "namespace": namespace},
        "spec": {
            "nodeName": node,
            "resourceClaims": [{"name": "vf", "resourceClaimName": name}],
            "containers": [
                {"name": "ctr0", "image": "toolbox", "resources": {"claims": [{"name": "vf"}]}}
            ],
        },
    }
    apply(cluster, pod)
    pod_uid = cluster.kubectl_json("get", "pod", "pod0", "-n", namespace)["metadata"]["uid"]
    conditions = [
        {"type": kind, "status": "True", "reason": reason, "message": "as the agent says",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}
        for kind, reason in (("Ready", "Ready"), ("VfConfigured", "Configured"),
                             ("NetworkReady", "Attached"))
    ]  # fmt: skip
    status = {
        "status": {
            "reservedFor": [{"resource": "pods", "name": "pod0", "uid": pod_uid}],
            "devices": [
                {
                    "driver": driver,
                    "pool": pool,
                    "device": device,
                    "conditions": conditions,
                    "networkData": NET1,
                    "data": {
                        "ifName": "net1",
                        "networkAttachmentDefinition": f"{namespace}/{nad}",
                    },
                }
            ],
        }
    }
    cluster.kubectl(
        "patch", "resourceclaim", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    return node, device


def seed_vf(view: dict[str, Any], claim: str) -> dict[str, Any] | None:
    for node in view["nodes"]:
        for pf in node["pfs"]:
            for vf in pf["vfs"]:
                if vf["claim"] == claim:
                    return dict(vf)
    return None


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed: run .ci/setup (Debian package chromium)"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_page_json_cli_and_browser_show_the_seed_claim_on_its_vf(
    cluster: DevCluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    nad, seed = load_seed(namespace)
    hostile = claim_manifest(
        "hostile", namespace, DRIVER_NAME, vfconfig(ifName="net1", netAttachDefName=HOSTILE_NAD)
    )
    claim_ref = f"{namespace}/{seed['metadata']['name']}"
    try:
        with simulated_vfs(cluster, f"{namespace}-vfs", per_node=4):
            apply(cluster, nad, seed, hostile)
            allocated = wait_allocated(cluster, namespace, seed["metadata"]["name"])
            node, device = play_agent(cluster, namespace, allocated, nad["metadata"]["name"])
            wait_for_event(cluster, namespace, "hostile", "InvalidVfConfig")

            # The page follows the cache: the VF is attached once the watch brought the status.
            def attached() -> dict[str, Any] | None:
                view = page_json(operator)
                vf = seed_vf(view, claim_ref)
                waiting = {w["claim"]: w for w in view["waiting"]}
                hostile_waits = waiting.get(f"{namespace}/hostile", {}).get("reason")
                ready = vf and vf["state"] == "attached" and hostile_waits == "InvalidVfConfig"
                return view if ready else None

            view = wait_until(attached, timeout=30, what="the seed VF attached on the page")
            vf = seed_vf(view, claim_ref)
            assert vf is not None
            assert (vf["device"], vf["pods"], vf["ips"], vf["mac"], vf["if_name"], vf["nad"]) == (
                device, ["pod0"], [IP], MAC, "net1", f"{namespace}/{nad['metadata']['name']}",
            )  # fmt: skip
            [hostile_view] = [w for w in view["waiting"] if w["claim"] == f"{namespace}/hostile"]
            assert HOSTILE_NAD in hostile_view["message"] and hostile_view["warning"]

            # The CLI reads the API server and must print what the page serves.
            def same() -> tuple[Any, Any] | None:
                printed = json.loads(cli(cluster, "-o", "json").stdout)
                served = page_json(operator)
                return (printed, served) if printed == served else None

            wait_until(same, timeout=30, what="sriov-dra inventory -o json == /inventory.json")
            one_node = json.loads(cli(cluster, "--node", node, "-o", "json").stdout)
            assert one_node == page_json(operator, f"?node={node}")

            table = cli(cluster, "--node", node, "-o", "wide")
            assert "Read from the API server" in table.stderr
            [row] = [line for line in table.stdout.splitlines() if claim_ref in line]
            cells = row.split()
            assert (cells[0], cells[1], cells[3]) == (node, "simpf0", "attached")
            for value in ("pod0", IP, MAC):
                assert value in row

            # A bad query is a clear 4xx, not a traceback.
            with pytest.raises(urllib.error.HTTPError) as bad:
                page_json(operator, "?page=zero")
            assert bad.value.code == 400
            assert "page" in bad.value.read().decode()

            # A real browser: the page loads, shows the claim on its VF, runs no user markup.
            url = f"http://127.0.0.1:{operator.metrics_port}/?node={node}"
            dom = chromium("--dump-dom", url).stdout
            assert "<title>sriov-dra inventory</title>" in dom, "user markup ran in the page"
            assert claim_ref in dom and "attached" in dom and IP in dom
            assert "&lt;script&gt;document.title" in dom and "<img src=" not in dom
            shot = tmp_path / "inventory.png"
            chromium(f"--screenshot={shot}", "--window-size=1400,900", "--hide-scrollbars", url)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get(SCREENSHOT_ENV):
                shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
    finally:
        cluster.kubectl(
            "delete", "pod", "pod0", "-n", namespace, "--grace-period=0", "--force", check=False
        )
        release_all(cluster, namespace)
