"""The CNI IPAM plugin's answers fuzzed: a result parses or is an IpamError, an error output
always becomes an IpamError (never raises), and a well-formed result keeps its addresses."""

from __future__ import annotations

import ipaddress
import json

from fuzz_strategies import JSON, with_keys
from hypothesis import example, given
from hypothesis import strategies as st
from sriov_dra.errors import IpamError
from sriov_dra_agent.attach.ipam import parse_error, parse_result

INTERFACES = st.ip_addresses(v=4).map(lambda a: f"{a}/24") | st.ip_addresses(v=6).map(
    lambda a: f"{a}/64"
)
IP_CONFIGS = st.fixed_dictionaries(
    {"address": INTERFACES | st.text(max_size=12) | JSON},
    optional={"gateway": st.ip_addresses().map(str) | JSON, "interface": JSON},
)
RESULTS = with_keys(
    ["cniVersion", "ips", "routes", "dns", "interfaces"], JSON
) | st.fixed_dictionaries(
    {"cniVersion": st.sampled_from(["1.0.0", "0.4.0"]), "ips": st.lists(IP_CONFIGS, max_size=3)},
    optional={
        "routes": st.lists(
            st.fixed_dictionaries({"dst": st.sampled_from(["0.0.0.0/0", "::/0"]) | JSON}),
            max_size=2,
        ),
        "dns": JSON,
    },
)
"""Objects with a result's keys and any values; results shaped right with fuzzed addresses."""
ERRORS = with_keys(["cniVersion", "code", "msg", "details"], JSON) | st.fixed_dictionaries(
    {"code": st.integers() | st.floats() | st.text(max_size=5) | JSON, "msg": JSON},
    optional={"details": JSON},
)
"""CNI error objects, their code and msg of any type."""


@given(st.text(max_size=60) | JSON.map(json.dumps) | RESULTS.map(json.dumps))
@example("[" * 100_000)
@example('{"ips": [{"address": "10.0.0.1/24"}], "x": ' + "9" * 5000 + "}")
def test_a_result_parses_or_is_an_ipam_error(stdout: str) -> None:
    try:
        result = parse_result(stdout, plugin="host-local")
    except IpamError as error:
        assert error.field == "spec.config.ipam (host-local)" and error.fix
        return
    assert result.ips
    for ip in result.ips:
        ipaddress.ip_interface(ip.address)


@given(st.lists(INTERFACES, min_size=1, max_size=3))
def test_a_well_formed_result_keeps_its_addresses(addresses: list[str]) -> None:
    stdout = json.dumps({"cniVersion": "1.0.0", "ips": [{"address": a} for a in addresses]})
    result = parse_result(stdout, plugin="host-local")
    assert [ip.address for ip in result.ips] == addresses


@given(
    st.text(max_size=60) | JSON.map(json.dumps) | ERRORS.map(json.dumps),
    st.integers(min_value=1, max_value=255),
    st.text(max_size=30),
)
@example('{"code": "eleven", "msg": "no IP addresses available"}', 1, "")
@example('{"code": 1e400, "msg": "x"}', 1, "")
@example('{"code": [7], "msg": "x"}', 1, "")
@example("[" * 100_000, 1, "")
def test_an_error_output_always_becomes_an_ipam_error(
    stdout: str, returncode: int, stderr: str
) -> None:
    error = parse_error(stdout, plugin="host-local", returncode=returncode, stderr=stderr)
    assert isinstance(error, IpamError)
    assert isinstance(error.code, int)
    assert error.field == "spec.config.ipam (host-local)" and error.fix
