"""The operator's flags and their environment fallbacks."""

from __future__ import annotations

import argparse

import pytest
from sriov_dra.errors import InvalidSetting
from sriov_dra_operator import settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers=0"], "--workers must be at least 1, got 0"),
        (["--metrics-port=70000"], "--metrics-port must be 0..65535, got 70000"),
    ],
    ids=["workers", "port"],
)
def test_bad_flags_are_refused(argv: list[str], message: str) -> None:
    parser = argparse.ArgumentParser()
    settings.configure_parser(parser)
    with pytest.raises(ValueError) as info:
        settings.from_args(parser.parse_args(argv))
    assert str(info.value) == message


def test_nad_namespaces_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRIOV_DRA_OPERATOR_NAD_NAMESPACES", "shared, infra")
    parser = argparse.ArgumentParser()
    settings.configure_parser(parser)
    assert settings.from_args(parser.parse_args([])).nad_namespaces == {"shared", "infra"}
    flagged = settings.from_args(parser.parse_args(["--nad-namespaces=net"]))
    assert flagged.nad_namespaces == {"net"}


def test_leader_election_flags_env_and_pod_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRIOV_DRA_OPERATOR_LEADER_ELECT", "true")
    monkeypatch.setenv("POD_NAMESPACE", "net-ops")
    parser = argparse.ArgumentParser()
    settings.configure_parser(parser)
    parsed = settings.from_args(parser.parse_args(["--lease-duration=4", "--renew-deadline=3"]))
    assert parsed.leader_elect
    assert (parsed.lease_namespace, parsed.lease_name) == ("net-ops", "sriov-dra-operator")
    assert (parsed.election.lease_duration, parsed.election.renew_deadline) == (4, 3)
    assert not settings.from_args(parser.parse_args(["--no-leader-elect"])).leader_elect


def test_a_renew_deadline_past_the_lease_is_refused_with_its_flag() -> None:
    parser = argparse.ArgumentParser()
    settings.configure_parser(parser)
    with pytest.raises(InvalidSetting) as info:
        settings.from_args(parser.parse_args(["--lease-duration=5", "--renew-deadline=10"]))
    assert "--lease-duration (5.0) must exceed --renew-deadline (10.0)" in str(info.value)
