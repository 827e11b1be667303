"""The source-root layout must never shadow the standard library; the core stays pure."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_module_is_not_shadowed_from_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import operator, collections; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" not in out.stdout
    assert Path(out.stdout.strip()).name == "operator.py"
    assert not Path(out.stdout.strip()).is_relative_to(ROOT)


def test_no_top_level_package_named_operator() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "node_agent" / "__init__.py").exists()


def test_our_packages_import_from_the_source_roots() -> None:
    code = "import sriov_dra, sriov_dra_kube, sriov_dra_operator, sriov_dra_agent;"
    code += "import sriov_dra_devcluster, operator;"
    code += "assert hasattr(operator, 'itemgetter')"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_core_never_imports_the_kubernetes_layer_or_its_libraries() -> None:
    shells = {"kubernetes_asyncio", "kopf", "aiohttp", "sriov_dra_kube"}
    found = {}
    for path in (ROOT / "operator" / "sriov_dra").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in shells:
                    found[path.name] = name
    assert found == {}


def test_cli_lists_its_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sriov_dra.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("operator", "agent", "devcluster", "hook"):
        assert command in out.stdout


def test_test_module_basenames_are_unique() -> None:
    # pytest imports test modules by basename (rootdir-relative packages are not used):
    # two files of one name break the collection of a clean checkout.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_product_commands_skip_the_entry_point_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # The OCI hook runs on every container start: reading every distribution's
    # metadata for plugin commands would cost it ~30 ms each time.
    import importlib.metadata

    from sriov_dra import cli

    def scan(**_: object) -> None:
        raise AssertionError("entry points scanned for a product command")

    monkeypatch.setattr(importlib.metadata, "entry_points", scan)
    with pytest.raises(SystemExit) as done:
        cli.main(["hook", "--claim-uid", "x", "--help"])
    assert done.value.code == 0
    with pytest.raises(AssertionError, match="entry points scanned"):
        cli.main(["devcluster", "--help"])
