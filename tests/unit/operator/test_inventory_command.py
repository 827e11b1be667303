"""``sriov-dra inventory``'s tables: kubectl's layout, the same rows as the page's view."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sriov_dra.device_pools import pools_from_slices
from sriov_dra.inventory import build_inventory, select
from sriov_dra_operator.inventory_command import render_tables, run, table
from unit.allocator_inputs import D, node_vfs
from unit.inventory_inputs import NET, claim, entry


def view_with_one_attached_vf() -> str:
    inventory = build_inventory(
        pools=pools_from_slices([node_vfs("node-a", pfs=1)], driver=D),
        claims=[
            claim("static-vf-claim", "0000-01-00-2", pods=("pod0",),
                  status_devices=[entry("0000-01-00-2", configured="True", network=NET)]),
            claim("waits"),
        ],
        nodes={"node-a", "node-b"},
        last_events={"uid-waits": ("NoDeviceAvailable", "0 of 2 matching VFs are free")},
        ours=lambda _: True,
        driver=D,
    )  # fmt: skip
    return render_tables(select(inventory), wide=True)


def test_columns_line_up_and_empty_cells_read_none() -> None:
    assert table([["NAME", "X"], ["a-long-name", ""]]).splitlines() == [
        "NAME          X",
        "a-long-name   <none>",
    ]


def test_the_tables_list_pfs_vfs_and_waiting_claims() -> None:
    lines = view_with_one_attached_vf().splitlines()
    assert lines[0].split() == ["NODE", "PF", "PCI", "FREE", "TOTAL"]
    assert lines[1].split() == ["node-a", "ens1f0", "<none>", "1", "2"]
    assert lines[2].split() == ["node-b", "<none>", "<none>", "0", "0"]
    [attached] = [line for line in lines if "ns/static-vf-claim" in line]
    assert attached.split() == [
        "node-a", "ens1f0", "0", "attached", "ns/static-vf-claim", "pod0", "10.0.3.2/24",
        "0000:01:00.2", "ns/nad-a", "net1", "02:00:00:00:00:01", "<none>",
    ]  # fmt: skip
    [waiting] = [line for line in lines if line.startswith("ns/waits")]
    assert "NoDeviceAvailable (Warning)" in waiting and "0 of 2 matching VFs are free" in waiting


@pytest.mark.parametrize("text", ["not: [a kubeconfig", "apiVersion: v1\nkind: Config\n"])
def test_an_unusable_kubeconfig_is_one_line_naming_the_fix(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text(text)
    args = argparse.Namespace(kubeconfig=str(bad), driver=D, node="", output="")
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "cannot load the kubeconfig" in err and "fix: pass --kubeconfig" in err
    assert "Traceback" not in err
