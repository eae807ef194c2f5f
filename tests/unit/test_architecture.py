"""The layering of DESIGN.md, enforced: tui -> p2pnet -> protocol -> crypto, I/O at the edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["tui", "p2pnet", "protocol", "crypto"]  # each may import only those after it
IO_MODULES = {
    "asyncio",
    "trio",
    "socket",
    "ssl",
    "selectors",
    "subprocess",
    "sqlite3",
    "textual",
    "libp2p",
    "multiaddr",
    "zeroconf",
    "time",
    "datetime",
    "random",
    "io",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "logging",
    "threading",
}
# STYLE.md rule 5: crypto/keystore.py is the one module of crypto that touches key files;
# crypto/groupkeys.py draws randomness from os.urandom (the CSPRNG), and nothing else of os.
ALLOWED_IO = {
    "crypto/keystore.py": {"os", "pathlib"},
    "crypto/groupkeys.py": {"os"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_down_only(package: str) -> None:
    forbidden = set(LAYERS[: LAYERS.index(package)])
    for path in _sources(package):
        wrong = _imports(path) & forbidden
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: arrows point down"


@pytest.mark.parametrize("package", ["protocol", "crypto"])
def test_pure_layers_do_no_io(package: str) -> None:
    for path in _sources(package):
        rel = str(path.relative_to(ROOT))
        wrong = _imports(path) & (IO_MODULES - ALLOWED_IO.get(rel, set()))
        assert not wrong, f"{rel} imports I/O modules {sorted(wrong)}"


def test_only_tui_imports_textual() -> None:
    for package in ["p2pnet", "protocol", "crypto"]:
        for path in _sources(package):
            assert "textual" not in _imports(path), f"{path.relative_to(ROOT)} imports textual"


def test_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import p2pnet.store\nfrom tui import app\nimport socket\n")
    assert {"p2pnet", "tui", "socket"} <= _imports(bad)
