"""The package's layers (pyproject.toml's import-linter contract) and one owner per concern."""
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LAYERS = ("book", "runner", "steps", "record", "train", "evaluate", "data")


def test_imports_only_run_down_the_layers():
    """cli > book > notebook > runner > steps > record > train > evaluate > data > foundation: no import runs up a
    layer and no import circle crosses one (``lint-imports`` reads the contract in pyproject.toml)."""
    out = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "1 kept, 0 broken" in out.stdout


def test_the_tree_shows_the_layers():
    pkg = ROOT / "allrep"
    for layer in LAYERS:
        assert (pkg / layer / "__init__.py").is_file(), layer
    flat = sorted(p.stem for p in pkg.glob("*.py") if p.stem != "__init__")
    assert flat == ["cache", "cli", "errors", "io", "notebook", "profile", "progress", "repro"]


def test_only_the_runs_module_names_a_run():
    """Which run is which (development, registered, scratch) is decided in allrep.record.runs alone."""
    found = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "allrep").rglob("*.py") if p.name != "runs.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if "confirmatory" in line]
    assert found == []


def test_no_module_imports_a_private_name_of_another():
    private = re.compile(r"^\s*from (allrep[\w.]*) import (.*)$", re.M)
    bad = []
    for p in (ROOT / "allrep").rglob("*.py"):
        for mod, names in private.findall(p.read_text()):
            for n in names.strip("()").split(","):
                n = n.split(" as ")[0].strip()
                if n.startswith("_") and n != "__version__":
                    bad.append(f"{p.relative_to(ROOT)}: {mod}.{n}")
    assert bad == []


def test_no_import_circle():
    """No module imports, directly or through others, a module that imports it (grimp, import-linter's graph)."""
    import grimp

    g = grimp.build_graph("allrep")
    circles = sorted({tuple(sorted((m, n))) for m in g.modules for n in g.find_modules_directly_imported_by(m)
                      if g.chain_exists(importer=n, imported=m)})
    assert circles == []


def _defines(path, name: str) -> bool:
    """Whether module file ``path`` binds ``name`` at its top level (def, class, assignment or import)."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def test_every_module_the_pages_name_exists():
    """`allrep.x.y` in README.md and the book's pages names a module, or a name in one, that exists (read from the
    source, without importing it)."""
    refs = set()
    for p in [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]:
        refs |= set(re.findall(r"\ballrep(?:\.[A-Za-z_]\w*)+", p.read_text()))
    missing = []
    for ref in sorted(refs):
        parts = ref.split(".")
        for i in range(len(parts), 0, -1):  # the longest prefix that is a module, then one name in it
            base = ROOT.joinpath(*parts[:i])
            path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
            if path.is_file():
                rest = parts[i:]
                if rest and not (_defines(path, rest[0]) or (base / f"{rest[0]}.py").is_file()):
                    missing.append(ref)
                break
        else:
            missing.append(ref)
    assert missing == []
