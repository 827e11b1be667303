"""VF records on disk: written atomically, and records written by earlier versions still load."""

from __future__ import annotations

from pathlib import Path

from sriov_dra.claim_ref import ClaimRef
from sriov_dra_agent.vf.records import RecordStore, VfRecord
from sriov_dra_agent.vf.vf_settings import VfSettings

# A record as the agent wrote it before ClaimRef moved to the core (its own pydantic
# model then, fields in the order uid, namespace, name).
OLD_RECORD = (
    '{"pci_address":"0000:08:00.2","pf_name":"ens1f0","vf_index":0,'
    '"claim":{"uid":"uid-1","namespace":"default","name":"claim-a"},'
    '"request":"vf","host_ifname":"ens1f0v0","host_mac":null,"host_mtu":null,'
    '"adopted_netdev":false,"original":{"mac":null,"vlan":null,"qos":null,"proto":null,'
    '"spoofchk":null,"trust":null,"link_state":null,"min_tx_rate":null,"max_tx_rate":null},'
    '"original_driver":null,"original_override":null,"driver":null,'
    '"desired":{"mac":null,"vlan":null,"qos":null,"proto":null,"spoofchk":null,"trust":null,'
    '"link_state":null,"min_tx_rate":null,"max_tx_rate":null},'
    '"result":{"applied":[],"unchanged":[],"unsupported":{}},'
    '"attachment":{"phase":"attached","netns":"/proc/1/ns/net","netns_id":null,"if_name":"net1",'
    '"mac":null,"mtu":null,"container_id":"uid-1-vf","ipam_conf":null,'
    '"ips":["10.0.3.2/24"],"hardware_address":""}}'
)


def test_a_record_written_by_the_previous_version_loads(tmp_path: Path) -> None:
    (tmp_path / "0000:08:00.2.json").write_text(OLD_RECORD)
    record = RecordStore(tmp_path).get("0000:08:00.2")
    assert record is not None
    assert record.claim == ClaimRef("default", "claim-a", "uid-1")
    assert record.claim.ref() == "default/claim-a"
    assert record.attachment is not None
    assert record.attachment.ips == ("10.0.3.2/24",)


def test_put_then_get_and_all_round_trip(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "vfs")
    record = VfRecord(
        pci_address="0000:08:00.3",
        pf_name="ens1f0",
        vf_index=1,
        claim=ClaimRef("default", "claim-b", "uid-2"),
        request="vf",
        host_ifname=None,
        original=VfSettings(),
    )
    store.put(record)
    assert store.get("0000:08:00.3") == record
    assert store.all() == [record]
    assert sorted(p.name for p in (tmp_path / "vfs").iterdir()) == ["0000:08:00.3.json"]
