"""Dependencies flow ui → app → core → tuneforge_kernels, never back (STYLE §1), and the trainer is a leaf."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package → top-level names it must never import
FORBIDDEN = {
    "tuneforge_kernels": {"PySide6", "ui", "app", "core"},
    "core": {"PySide6", "ui", "app"},
    "app": {"PySide6"},
}
ALLOWED = {("app/cli.py", "ui")}  # the entry point opens the window; nothing else in app/ touches ui/


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_arrow(package):
    wrong = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for name in imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN[package] and (rel, top) not in ALLOWED:
                wrong.append(f"{rel} imports {name}")
    assert not wrong, "imports against ui → app → core → tuneforge_kernels:\n" + "\n".join(wrong)


def test_nothing_imports_the_trainer():
    offenders = []
    files = [p for d in ("app", "core", "ui", "tuneforge_kernels", "tests", "benchmarks", "packaging") for p in (REPO / d).rglob("*.py")]
    for path in sorted(files) + sorted(REPO.glob("*.py")):
        if path.name == "trainer.py" or path == Path(__file__):
            continue
        if any(n == "core.trainer" or n.startswith("core.trainer.") for n in imports(path)):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"the trainer is a leaf script; these import it: {offenders}"


def test_importing_the_trainer_is_refused():
    with pytest.raises(ImportError, match="script"):
        import core.trainer  # noqa: F401
