"""Stamps: what a variant's executed copy depends on; equal stamps mean nothing to re-execute.

A stamp holds the source notebook's digest, the variant's parameters, the profile sections its step declares,
the step's declaration in :data:`allrep.runner.registry.STEPS`, the contents of its declared inputs, and one
digest per allrep module it uses: the import closure of its step module and of the modules its notebook imports,
each hashed as a syntax tree (so a comment changes nothing; a docstring does). Per-module digests let
``allrep steps`` name what changed (:func:`changes`).
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from allrep.profile import PROJECT_ROOT, Profile
from allrep.record import places
from allrep.runner.registry import Step, declared

PACKAGE = PROJECT_ROOT / "allrep"


_PER_VERSION: dict = {}


def _per_version(kind: str, path: Path, compute, *extra):
    """``compute(path, *extra)``, once per version of the file (path, size, mtime): stamping every variant
    reads the same few dozen modules and notebooks again and again."""
    st = path.stat()
    k = (kind, str(path), st.st_size, st.st_mtime_ns, *extra)
    if k not in _PER_VERSION:
        _PER_VERSION[k] = compute(path, *extra)
    return _PER_VERSION[k]


def _parse(path: Path) -> tuple:
    tree = ast.parse(path.read_text())
    return tree, ast.dump(tree)


def _parsed(path: Path) -> tuple:
    """(syntax tree, its dump) of a source file."""
    return _per_version("parsed", path, _parse)


def _imports(path: Path, modname: str) -> set[str]:
    """allrep modules imported anywhere in ``path`` (top level or inside functions)."""
    return set(_per_version("imports", path, _find_imports, modname))


def _find_imports(path: Path, modname: str) -> set[str]:
    tree = _parsed(path)[0]
    pkg = modname if path.name == "__init__.py" else modname.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "allrep"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "allrep":
                continue
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from allrep import plots` imports a module
    return found


def module_file(mod: str) -> Path | None:
    parts = mod.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


# plumbing that computes nothing a notebook shows: the runner (the declaration of a step is hashed instead), the
# record of runs (the seal and its replay, the ledger, the git history), the command line
_NOT_HASHED = {"allrep.runner.registry", "allrep.runner.stamps", "allrep.runner.execute", "allrep.runner.pipeline",
               "allrep.runner.dispatch", "allrep.cli", "allrep.record.seal", "allrep.record.replay",
               "allrep.record.ledger", "allrep.record.history"}
# followed for their own syntax but not for their imports: the package's __init__ only re-exports
# ``allrep.predict`` lazily, and `from allrep import plots` uses plots, not every module predict needs
_LEAVES = {"allrep"}


def closure(roots) -> list[str]:
    """The allrep modules ``roots`` use, transitively."""
    seen, todo = set(), [r for r in roots]
    while todo:
        mod = todo.pop()
        path = module_file(mod)
        if mod in seen or path is None:
            continue
        seen.add(mod)
        if mod not in _LEAVES:
            todo += sorted(_imports(path, mod))
    return sorted(seen - _NOT_HASHED)


def notebook_imports(nb_path: Path) -> set[str]:
    """allrep modules a notebook's code cells import."""
    return set(_per_version("notebook imports", nb_path, _notebook_imports))


def _notebook_imports(nb_path: Path) -> set[str]:
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    tree = ast.parse(src)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("allrep")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("allrep"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def step_modules(step: Step) -> list[str]:
    return closure({step.module} | notebook_imports(step.notebook))


def _code_digests(mods) -> dict[str, str]:
    """One digest per module, of its syntax tree."""
    return {m: hashlib.sha256(_parsed(module_file(m))[1].encode()).hexdigest()[:16] for m in mods}


def _files_digest(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(places.relative(p).encode())
        with open(p, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:16]


def stamp(cfg: Profile, step: Step, params: dict) -> dict:
    """What a variant's executed copy depends on; equal stamps mean nothing to re-execute."""
    inputs = declared(cfg, step, params, "inputs")
    missing = [places.relative(p) for p in inputs if not p.is_file()]
    return dict(notebook=_files_digest([step.notebook]), params=params, profile=cfg.digest(*step.sections),
                declaration=hashlib.sha256(step.declaration().encode()).hexdigest()[:16],
                inputs=_files_digest([p for p in inputs if p.is_file()]), missing_inputs=missing,
                code=_code_digests(step_modules(step)))


def changes(old: dict | None, new: dict) -> list[str]:
    """What differs between a stored stamp and today's, in words: ``notebook``, ``profile``, ``inputs``, each
    module added, removed or changed (``allrep.train.members``)..."""
    if not old:
        return ["never executed"]
    out = [k for k in ("notebook", "params", "profile", "declaration", "inputs", "missing_inputs")
           if old.get(k) != new.get(k)]
    was, now = old.get("code"), new["code"]
    if not isinstance(was, dict):  # a stamp from before per-module digests
        return out + ["code (stamped before per-module digests)"]
    for m in sorted(set(was) | set(now)):
        if was.get(m) != now.get(m):
            out.append(m + ("" if m in was and m in now else " (added)" if m in now else " (no longer used)"))
    return out


