"""The step registry: every notebook step, its variants, and every file it reads and writes.

One registry (:data:`STEPS`) is shared by the runner (:mod:`allrep.pipeline`), the book's table
of contents, the notebooks (through :class:`Context`) and the tests. A step declares

* ``sections``: the parts of the profile it depends on;
* ``inputs`` and ``outputs``: named path templates relative to the profile's results folder.
  A placeholder a variant fixes (``{dataset}``, ``{backbone}``) takes the variant's value; any
  other expands over the profile (``{protocol}``: both protocols; ``{scratch_dataset}``...);
* ``module``: the :mod:`allrep.steps` module that does its work (``30_ensemble`` ->
  ``allrep.steps.step30_ensemble``, tested in ``tests/test_step30_ensemble.py``).

Notebooks build no path: they ask their :class:`Context` for a declared name, and the context
refuses names a step did not declare. While the runner executes a notebook, an audit hook
(:mod:`allrep.notebook`) logs every results file the kernel opens or replaces; the runner fails
the step when one was not declared.

A variant is re-executed only when its stamp changes: the source notebook, its parameters, its
profile sections, the contents of its declared inputs, its declaration here, and the code of the
allrep modules it uses (the import closure of its step module and of the modules its notebook
imports, hashed as syntax trees, so comments do not count).
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import places
from .errors import AllrepError
from .io import atomic_write_csv, atomic_write_json
from .profile import PROJECT_ROOT, Profile
from .seal import FILE as SEAL_FILE
from .splits import PROTOCOLS  # noqa: F401 - re-exported: the steps expand {protocol} over it

NOTEBOOKS = PROJECT_ROOT / "notebooks"
PACKAGE = PROJECT_ROOT / "allrep"


@dataclass(frozen=True)
class Step:
    name: str  # notebook stem, e.g. "30_ensemble"
    title: str
    sections: tuple  # profile sections (or top-level settings) the step depends on
    inputs: dict = field(default_factory=dict)  # name -> template under the results folder
    outputs: dict = field(default_factory=dict)
    per: tuple = ()  # variant axes: "backbone", "dataset"

    @property
    def notebook(self) -> Path:
        return NOTEBOOKS / f"{self.name}.ipynb"

    @property
    def module(self) -> str:
        num, rest = self.name.split("_", 1)
        return f"allrep.steps.step{num}_{rest}"

    def variants(self, cfg: Profile) -> list[dict]:
        out = [{}]
        for axis in self.per:
            values = cfg.use_backbones if axis == "backbone" else cfg.datasets
            out = [dict(v, **{axis: x}) for v in out for x in values]
        return out

    def declaration(self) -> str:
        return json.dumps(dict(sections=self.sections, inputs=self.inputs, outputs=self.outputs, per=self.per),
                          sort_keys=True)


_SPLITS = "splits/{dataset}_{protocol}.csv"
_PROBS = "probabilities/{dataset}_{backbone}.csv"
_META = "probabilities/{dataset}_{backbone}.json"
_VALPROBS = "probabilities/{dataset}_{backbone}_val.csv"  # the same members on each split's validation part
_BEST = "tuning/best_{backbone}_{dataset}.csv"
_SHORTCUTS = "data/shortcut_baselines.csv"
_PLAIN = "probabilities/{dataset}_{backbone}_plain.csv"

STEPS = (
    Step("10_data_exploration", "Data exploration, shortcut audit and the verdict design",
         ("seed", "datasets", "splits", "show_images", "verdict"),
         outputs=dict(splits=_SPLITS, shortcuts=_SHORTCUTS, operating_characteristics="verdict/operating_characteristics.csv",
                      design="verdict/design.csv")),
    Step("20_tuning", "Bayesian tuning", ("seed", "backbones", "weights_dir", "features", "head", "training", "tuning",
                                          "recipe_choice"),
         inputs=dict(splits=_SPLITS),
         outputs=dict(best=_BEST, trials="tuning/trials_{backbone}_{dataset}.csv"), per=("backbone", "dataset")),
    Step("30_ensemble", "Deep-ensemble training",
         ("seed", "backbones", "weights_dir", "features", "head", "training", "ensemble", "recipe_choice"),
         inputs=dict(splits=_SPLITS, best=_BEST),
         outputs=dict(probabilities=_PROBS, validation=_VALPROBS, meta=_META,
                      members="probabilities/{dataset}_{backbone}_members.csv"),
         per=("backbone", "dataset")),
    Step("32_plain", "Plain reference head", ("seed", "backbones", "weights_dir", "features", "plain", "head",
                                              "training"),
         inputs=dict(splits=_SPLITS),
         outputs=dict(probabilities=_PLAIN, members="probabilities/{dataset}_{backbone}_plain_members.csv"),
         per=("backbone", "dataset")),
    Step("35_scratch", "EfficientNetB3 from scratch", ("seed", "scratch", "head", "use_backbones"),
         inputs=dict(splits="splits/{scratch_dataset}_{protocol}.csv",
                     probabilities="probabilities/{scratch_dataset}_{backbone}.csv",
                     meta="probabilities/{scratch_dataset}_{backbone}.json"),
         outputs=dict(probabilities="scratch/{scratch_dataset}_{scratch_backbone}.csv",
                      members="scratch/{scratch_dataset}_{scratch_backbone}_members.csv",
                      summary="fusion/scratch_summary.csv")),
    Step("40_uncertainty", "Uncertainty and calibration", ("seed", "datasets", "use_backbones", "uncertainty"),
         inputs=dict(probabilities=_PROBS, validation=_VALPROBS),
         outputs=dict(summary="uncertainty/summary.csv", calibration="uncertainty/calibration.csv",
                      temperatures="uncertainty/temperatures.csv", referral="uncertainty/referral.csv",
                      referral_fitted="uncertainty/referral_fitted.csv",
                      diversity="uncertainty/diversity.csv")),
    Step("50_fusion", "Sum-rule fusion and ablations", ("datasets", "use_backbones", "fusion"),
         inputs=dict(probabilities=_PROBS, meta=_META, plain=_PLAIN, shortcuts=_SHORTCUTS),
         outputs=dict(scores="fusion/scores.csv", summary="fusion/summary.csv", baselines="fusion/baselines.csv",
                      camera="fusion/camera.csv", camera_test="fusion/camera_test.csv")),
    Step("60_results", "Results: claims, protocols, baselines", ("datasets", "use_backbones", "verdict"),
         inputs=dict(scores="fusion/scores.csv", summary="fusion/summary.csv", meta=_META, best=_BEST, splits=_SPLITS),
         outputs=dict(claims="claims.csv")),
    Step("70_using_models", "Using the models",
         ("seed", "backbones", "use_backbones", "weights_dir", "features", "head", "training", "tuning", "ensemble",
          "splits", "uncertainty", "recipe_study", "recipe_choice"),
         inputs=dict(splits="splits/{dataset}_grouped.csv"),
         outputs=dict(predictions_IDB1="using/IDB1_held_out.csv", predictions_IDB2="using/IDB2_held_out.csv")),
)
STEP_NAMES = tuple(s.name for s in STEPS)

# results files no notebook step writes: name -> (template under the results folder, its writer)
OTHER_OUTPUTS = {
    "timings": ("timings/runs.json", "the runner (allrep run): one entry per run that executed something"),
    "recipe_study": ("recipe/study.csv", "scripts/recipe_study.py (the recipe study's evidence)"),
    "benchmark": ("benchmark.json", "scripts/benchmark.py (speed only, no accuracy)"),
    "ledger": ("ledger.csv", "the runner (allrep run): a row per scoring of a test part (allrep.ledger.record)"),
    "seal": (SEAL_FILE, "allrep seal: the checksummed record of a finished run (allrep.seal)"),
}


def other_output(name: str, cfg: Profile) -> Path:
    """The path of a declared results file that no step writes (:data:`OTHER_OUTPUTS`); the ledger is one file
    for both committed profiles (:func:`allrep.places.ledger_path`)."""
    if name == "ledger":
        return places.ledger_path(cfg)
    return places.output_dir(cfg) / OTHER_OUTPUTS[name][0]


def all_outputs(cfg: Profile) -> set[Path]:
    """Every results file the registry declares for ``cfg``: each step variant's outputs and :data:`OTHER_OUTPUTS`."""
    out = {other_output(n, cfg) for n in OTHER_OUTPUTS}
    for s in STEPS:
        for v in s.variants(cfg):
            out |= set(declared(cfg, s, v, "outputs"))
    return out


def get_step(name: str) -> Step:
    for s in STEPS:
        if name in (s.name, s.name.split("_", 1)[1], s.name[:2]):
            return s
    raise AllrepError(f"unknown step {name!r}: choose from {', '.join(STEP_NAMES)}")


def variant_id(params: dict) -> str:
    return "_".join(str(params[k]) for k in ("backbone", "dataset") if k in params) or "all"


def executed_path(cfg: Profile, step: Step, params: dict) -> Path:
    return places.executed_dir(cfg) / f"{step.name}__{variant_id(params)}.ipynb"


# ----------------------------------------------------------------------------- templates
def _axis_values(cfg: Profile, params: dict, key: str) -> tuple:
    if key in params:
        return (params[key],)
    table = dict(dataset=cfg.datasets, backbone=cfg.use_backbones, protocol=PROTOCOLS,
                 scratch_dataset=cfg.scratch.datasets, scratch_backbone=(cfg.scratch.backbone,))
    if key not in table:
        raise AllrepError(f"unknown placeholder {{{key}}} in a step's path template")
    return tuple(table[key])


def expand(cfg: Profile, params: dict, template: str) -> dict[tuple, Path]:
    """Every file a template names for this variant: {(value, ...): path}, keys in placeholder order."""
    keys = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    out = {}
    for combo in itertools.product(*(_axis_values(cfg, params, k) for k in keys)):
        out[combo] = places.output_dir(cfg) / template.format(**dict(zip(keys, combo)))
    return out


def declared(cfg: Profile, step: Step, params: dict, kind: str) -> list[Path]:
    templates = step.inputs if kind == "inputs" else step.outputs
    return sorted({p for t in templates.values() for p in expand(cfg, params, t).values()})


# ----------------------------------------------------------------------------- module closure
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


_NOT_HASHED = {"allrep.registry", "allrep.pipeline", "allrep.cli", "allrep.dispatch"}  # plumbing: the declaration is hashed instead
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


def _code_digest(mods) -> str:
    h = hashlib.sha256()
    for m in mods:
        h.update(m.encode())
        h.update(_parsed(module_file(m))[1].encode())
    return h.hexdigest()[:16]


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
                code=_code_digest(step_modules(step)))


# ----------------------------------------------------------------------------- the notebooks' view
RUNNER_ENV = "ALLREP_RUNNER"  # set by the runner (allrep run) for the kernels it starts
WRITE_RESULTS_ENV = "ALLREP_WRITE_RESULTS"  # "1": a hand run writes the profile's own results folder


def _in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (an IPython shell with a kernel attached)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def hand_run_dir(cfg: Profile) -> Path | None:
    """Where a notebook run by hand writes: ``$ALLREP_SCRATCH/interactive/<profile>/results`` (default
    ``scratch/interactive/...``, ignored by git), so that running a paper or confirmatory variant in Jupyter, with
    a bare papermill call or under nbval never overwrites the results the runner wrote. None (the profile's own
    folder) for the runner's kernels, outside a kernel (the runner, Dask units, tests), and with
    ``ALLREP_WRITE_RESULTS=1``."""
    import os

    if not _in_kernel() or os.environ.get(RUNNER_ENV) == "1" or os.environ.get(WRITE_RESULTS_ENV) == "1":
        return None
    return places.scratch_root() / "interactive" / cfg.name / "results"


@dataclass
class Context:
    """What one executing variant may touch: its profile, its parameters and its declared files.

    In a notebook run by hand (:func:`hand_run_dir`) its outputs go to the hand-run folder, and an input is read
    from there when a hand run wrote it, else from the profile's own results."""

    step: Step
    cfg: Profile
    params: dict
    env: dict = field(default_factory=dict)
    hand: Path | None = field(default=None, init=False)

    def __post_init__(self):
        self.hand = hand_run_dir(self.cfg)
        if self.hand is not None:
            shown = places.relative(self.hand) if self.hand.resolve().is_relative_to(PROJECT_ROOT) else self.hand
            print(f"hand run: outputs go to {shown}/ (inputs are read from there when a hand run "
                  f"wrote them, else from {places.relative(places.output_dir(self.cfg))}/); `allrep run` writes the "
                  f"profile's own results")

    def _moved(self, p: Path) -> Path:
        return self.hand / p.relative_to(places.output_dir(self.cfg))

    def __getattr__(self, name):  # ctx.backbone, ctx.dataset
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(name)

    def _template(self, name: str, kind: str) -> str:
        table = self.step.inputs if kind == "inputs" else self.step.outputs
        if name not in table:
            raise AllrepError(f"step {self.step.name} declares no {kind[:-1]} {name!r} "
                              f"(it declares {', '.join(table) or 'none'}): add it to allrep.registry.STEPS")
        return table[name]

    def paths(self, name: str, kind: str = "inputs", **fixed) -> dict[tuple, Path]:
        found = expand(self.cfg, {**self.params, **fixed}, self._template(name, kind))
        if self.hand is None:
            return found
        if kind == "outputs":
            return {k: self._moved(p) for k, p in found.items()}
        return {k: m if (m := self._moved(p)).is_file() else p for k, p in found.items()}

    def path(self, name: str, kind: str = "inputs", **fixed) -> Path:
        found = self.paths(name, kind, **fixed)
        if len(found) != 1:
            raise AllrepError(f"{self.step.name}: {kind[:-1]} {name!r} names {len(found)} files; fix the placeholders")
        return next(iter(found.values()))

    def output(self, name: str, **fixed) -> Path:
        return self.path(name, "outputs", **fixed)

    def each_split(self) -> list[tuple[str, int, pd.DataFrame]]:
        """(protocol, repeat, split frame) of every split of the variant's dataset: the paper split,
        then each grouped repeat."""
        out = []
        for protocol in PROTOCOLS:
            frame = self.read_csv("splits", protocol=protocol)
            out += [(protocol, int(r), part) for r, part in frame.groupby("repeat", sort=True)]
        return out

    def read_csv(self, name: str, **fixed) -> pd.DataFrame:
        return _read_csv(self.path(name, **fixed), self.cfg)

    def read_all_csv(self, name: str) -> pd.DataFrame:
        """Every file a template names, concatenated (a missing one is an error naming the step that writes it)."""
        return pd.concat([_read_csv(p, self.cfg) for p in sorted(self.paths(name).values())], ignore_index=True)

    def read_json(self, name: str, **fixed):
        p = self.path(name, **fixed)
        _require(p, self.cfg)
        return json.loads(p.read_text())

    def read_all_json(self, name: str) -> dict:
        out = {}
        for key, p in self.paths(name).items():
            _require(p, self.cfg)
            out[key] = json.loads(p.read_text())
        return out

    def write_csv(self, df: pd.DataFrame, name: str, **fixed) -> Path:
        return atomic_write_csv(df, self.output(name, **fixed))

    def write_json(self, obj, name: str, **fixed) -> Path:
        return atomic_write_json(self.output(name, **fixed), obj)


def _require(p: Path, cfg: Profile | None = None) -> None:
    if p.is_file():
        return
    writer = "an earlier step"
    if cfg is not None:
        writer = next((s.name for s in STEPS for v in s.variants(cfg) if p in declared(cfg, s, v, "outputs")), writer)
    raise AllrepError(f"{places.relative(p)} does not exist yet: run {writer} first "
                      f"(allrep run --profile {cfg.name if cfg else 'NAME'} --steps {writer[:2]})")


def _read_csv(p: Path, cfg: Profile | None = None) -> pd.DataFrame:
    _require(p, cfg)
    return pd.read_csv(p)
