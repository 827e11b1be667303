"""The operator's flags and their environment fallbacks."""

from __future__ import annotations

import argparse

import pytest
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
