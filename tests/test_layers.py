"""Imports run one way, bot -> handlers -> services: a module never imports a layer above its own."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("services", "handlers", "bot")  # lowest first


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every import in the module, wherever it sits (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((ROOT / layer).rglob("*.py")):
            above = imported_packages(path) & set(LAYERS[rank + 1:])
            upward += [f"{path.relative_to(ROOT)} imports {package}" for package in sorted(above)]
    assert not upward, "imports must run bot -> handlers -> services:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from bot.config import Settings\n    import handlers.i18n\n")
    assert imported_packages(module) == {"bot", "handlers"}
