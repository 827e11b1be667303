"""The product ships without its test world, and declares what it imports."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages
from sriov_dra import cli

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PRODUCT_ROOTS = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
# Distribution name -> import name, where they differ.
IMPORT_NAMES = {
    "kubernetes-asyncio": "kubernetes_asyncio",
    "common-expression-language": "cel",
    "google-re2": "re2",
    "prometheus-client": "prometheus_client",
    "grpcio": "grpc",
    "protobuf": "google",
}


def _product_imports() -> set[str]:
    found = set()
    for root in PRODUCT_ROOTS:
        for path in (ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


def test_the_wheel_holds_the_product_packages_and_no_test_world() -> None:
    packages = {p.split(".")[0] for root in PRODUCT_ROOTS for p in find_packages(ROOT / root)}
    assert packages == {"sriov_dra", "sriov_dra_kube", "sriov_dra_operator", "sriov_dra_agent"}


def test_the_image_build_context_holds_only_the_product() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:] for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "operator", "node_agent", "crds"}


def test_the_test_world_adds_its_commands_through_entry_points() -> None:
    assert set(cli.SUBCOMMANDS) == {"operator", "agent", "hook", "inventory"}
    available = cli.commands()
    assert available["devcluster"][0] == "sriov_dra_devcluster.cli"
    assert available["node-emulator"][0] == "sriov_dra_devcluster.node_emulator"


def test_every_product_import_is_declared_and_every_dependency_imported() -> None:
    declared = {
        dep.split(">")[0].split("<")[0].split("=")[0].strip()
        for dep in PYPROJECT["project"]["dependencies"]
    }
    declared_imports = {IMPORT_NAMES.get(name, name) for name in declared}
    ours = {"sriov_dra", "sriov_dra_kube", "sriov_dra_operator", "sriov_dra_agent"}
    third_party = {
        name
        for name in _product_imports() - ours
        if name not in sys.stdlib_module_names and name != "__future__"
    }
    assert third_party <= declared_imports, third_party - declared_imports
    # Declared but never imported: a dependency nothing uses.
    assert declared_imports - third_party == set()
