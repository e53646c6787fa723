"""The registry of ordered notebook steps, and the papermill runner.

One registry (:data:`STEPS`) is shared by the runner, the book's table of
contents (:func:`toc`) and the notebook-contract test. For a profile, each step
has variants (e.g. one per backbone and dataset); each variant is one executed
copy of the source notebook. A variant is skipped when its stamp (hash of the
source notebook, its parameters, the profile slice it reads and its input
files) matches the one stored beside its executed copy, so a second run
executes nothing and a killed run resumes (members and features are cached
below the notebook level too).

The paper profile writes executed notebooks into ``book/executed``; any other
profile into ``scratch/<profile>/book/executed``: a smoke run can never
overwrite the committed book.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_ROOT, Config, load_profile
from .errors import AllrepError
from .io import atomic_write_json, atomic_write_text

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK = PROJECT_ROOT / "book"


@dataclass(frozen=True)
class Step:
    name: str  # notebook stem, e.g. "20_tuning"
    title: str
    config_keys: tuple  # profile keys the step depends on
    inputs: tuple = ()  # globs under the output folder that the step reads
    per: tuple = ()  # variant axes: "backbone", "dataset"

    @property
    def notebook(self) -> Path:
        return NOTEBOOKS / f"{self.name}.ipynb"

    def variants(self, cfg: Config) -> list[dict]:
        out = [{}]
        for axis in self.per:
            values = cfg["use_backbones"] if axis == "backbone" else cfg["datasets"]
            out = [dict(v, **{axis: x}) for v in out for x in values]
        return out


_COMMON = ("seed", "splits", "datasets")
STEPS = (
    Step("10_data_exploration", "Data exploration and shortcut audit", _COMMON),
    Step("20_tuning", "Bayesian tuning", _COMMON + ("backbones", "weights_dir", "features", "training", "tuning"),
         per=("backbone", "dataset")),
    Step("30_ensemble", "Deep-ensemble training",
         _COMMON + ("backbones", "weights_dir", "features", "head", "training", "ensemble"),
         inputs=("tuning/best_hyperparameters.csv",), per=("backbone", "dataset")),
    Step("35_scratch", "EfficientNetB3 from scratch", _COMMON + ("scratch", "head", "use_backbones"),
         inputs=("probabilities/*.csv", "probabilities/*.json")),
    Step("40_uncertainty", "Uncertainty and calibration", _COMMON + ("uncertainty", "use_backbones"),
         inputs=("probabilities/*.csv",)),
    Step("50_fusion", "Sum-rule fusion and ablations", _COMMON + ("fusion", "use_backbones"),
         inputs=("probabilities/*.csv",)),
    Step("60_results", "Results: claims, protocols, baselines", _COMMON + ("fusion", "uncertainty", "use_backbones"),
         inputs=("probabilities/*.csv", "probabilities/*.json", "tuning/*.csv", "fusion/*.csv", "data/*.csv")),
)
STEP_NAMES = tuple(s.name for s in STEPS)


def get_step(name: str) -> Step:
    for s in STEPS:
        if s.name == name or s.name.split("_", 1)[1] == name or s.name[:2] == name:
            return s
    raise AllrepError(f"unknown step {name!r}: choose from {', '.join(STEP_NAMES)}")


def executed_dir(cfg: Config) -> Path:
    from .experiment import profile_root

    return profile_root(cfg) / "book" / "executed"


def book_dir(cfg: Config) -> Path:
    return executed_dir(cfg).parent


def variant_id(params: dict) -> str:
    return "_".join(str(params[k]) for k in ("backbone", "dataset") if k in params) or "all"


def executed_path(cfg: Config, step: Step, params: dict) -> Path:
    return executed_dir(cfg) / f"{step.name}__{variant_id(params)}.ipynb"


def _hash_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def stamp(cfg: Config, step: Step, params: dict) -> dict:
    from .experiment import output_dir

    out = output_dir(cfg)
    files = [p for g in step.inputs for p in out.glob(g)]
    return dict(notebook=_hash_files([step.notebook]), params=params, config=cfg.digest(*step.config_keys),
                inputs=_hash_files(files), package=_hash_files(Path(__file__).parent.glob("*.py")))


def _stamp_path(nb: Path) -> Path:
    return nb.with_suffix(".stamp.json")


def is_current(cfg: Config, step: Step, params: dict) -> bool:
    nb = executed_path(cfg, step, params)
    sp = _stamp_path(nb)
    return nb.is_file() and sp.is_file() and json.loads(sp.read_text()) == stamp(cfg, step, params)


def _provenance(cfg: Config, params: dict, seconds: float) -> dict:
    from .repro import environment

    return dict(profile=cfg.name, parameters=params, seconds=round(seconds, 1), environment=environment(),
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def execute(cfg: Config, step: Step, params: dict, log=print) -> Path:
    """Execute one variant with papermill; add provenance; write its stamp."""
    import nbformat
    import papermill as pm

    dst = executed_path(cfg, step, params)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_suffix(".partial.ipynb")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(step.notebook), str(partial), parameters=dict(profile=cfg.name, **params),
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as e:
        raise AllrepError(f"{step.name} [{variant_id(params)}] failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                          f"(partial notebook kept at {partial})") from None
    nb = nbformat.read(partial, as_version=4)
    nb.metadata["allrep"] = _provenance(cfg, params, time.perf_counter() - t0)
    atomic_write_text(dst, nbformat.writes(nb))
    partial.unlink(missing_ok=True)
    atomic_write_json(_stamp_path(dst), stamp(cfg, step, params))
    return dst


def run(profile: str, steps=None, datasets=None, backbones=None, force: bool = False, log=print) -> dict:
    """Execute the pipeline in order; returns counts of executed and skipped variants."""
    cfg = load_profile(profile)
    _absolute_env()
    chosen = [get_step(s) for s in steps] if steps else list(STEPS)
    chosen.sort(key=lambda s: s.name)
    todo = []
    for step in chosen:
        for params in step.variants(cfg):
            if datasets and "dataset" in params and params["dataset"] not in datasets:
                continue
            if backbones and "backbone" in params and params["backbone"] not in backbones:
                continue
            todo.append((step, params))
    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M")
    cache_start = cache_census()
    executed, skipped, times = [], [], {}
    if any(force or not is_current(cfg, s, p) for s, p in todo):
        from .data import require_verified

        require_verified(quick=False)  # every checksum, once, before any notebook reads an image
    for i, (step, params) in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {step.name} [{variant_id(params)}]"
        if not force and is_current(cfg, step, params):
            skipped.append(label)
            log(f"{label}: up to date, skipped")
            continue
        t0 = time.perf_counter()
        log(f"{label}: running (elapsed {time.perf_counter() - t_start:.0f}s)")
        execute(cfg, step, params, log)
        dt = time.perf_counter() - t0
        times[f"{step.name}__{variant_id(params)}"] = dt
        executed.append(label)
        left = len(todo) - i
        avg = (time.perf_counter() - t_start) / i
        log(f"{label}: done in {dt:.0f}s; about {left * avg:.0f}s left for {left} more")
    total = time.perf_counter() - t_start
    _record_times(cfg, times, total, started, cache_start)
    write_toc(cfg)
    log(f"pipeline {cfg.name}: {len(executed)} executed, {len(skipped)} skipped, {total:.0f}s")
    return dict(executed=executed, skipped=skipped, seconds=total)


def _absolute_env() -> None:
    """Kernels run in notebooks/: make path settings given relative to here absolute."""
    import os

    for var in ("ALLREP_DATA", "ALLREP_WEIGHTS_DIR", "ALLREP_CACHE"):
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cache_census() -> dict:
    """How much work the cache already holds: feature files (one per image and backbone),
    ensemble members and from-scratch members. All zero: the run computes everything."""
    from .experiment import cache_dir

    c = cache_dir()
    return dict(features=sum(1 for _ in c.glob("features/*/*.npz")), members=sum(1 for _ in c.glob("members/*/*.json")),
                scratch=sum(1 for _ in c.glob("scratch/*/*.json")))


def _record_times(cfg: Config, times: dict, total: float, started: str, cache_start: dict | None = None) -> None:
    """Append this run to ``timings/runs.json``: one entry per run that executed something,
    so a later run served from caches never hides what the computing run took."""
    from .experiment import output_dir
    from .repro import environment

    if not times:
        return
    path = output_dir(cfg) / "timings" / "runs.json"
    runs = json.loads(path.read_text()) if path.is_file() else []
    env = environment()
    runs.append(dict(started=started, profile=cfg.name, commit=env["commit"], backend=env["backend"],
                     machine=f"{env['cpus']} CPUs, {env['platform']}", total_seconds=round(total, 1),
                     cache_at_start=cache_start,
                     variants={k: round(v, 1) for k, v in times.items()}))
    atomic_write_json(path, runs)


# ----------------------------------------------------------------------------- book
PAGES_BEFORE = ("intro", "data", "methods")
PAGES_AFTER = ("deviations", "reproduce")


def toc(cfg: Config) -> str:
    """``_toc.yml`` for the book of ``cfg``: pages, then each step's executed variants."""
    lines = ["# Generated by `allrep book` from allrep.pipeline.STEPS: do not edit.", "format: jb-book", "root: intro",
             "parts:", "- caption: Replication", "  chapters:"]
    lines += [f"  - file: {p}" for p in PAGES_BEFORE[1:]]
    lines += ["- caption: Executed notebooks", "  chapters:"]
    for step in STEPS:
        variants = step.variants(cfg)
        first = f"executed/{step.name}__{variant_id(variants[0])}"
        lines.append(f"  - file: {first}")
        if len(variants) > 1:
            lines.append("    sections:")
            lines += [f"    - file: executed/{step.name}__{variant_id(v)}" for v in variants[1:]]
    lines += ["- caption: Honesty", "  chapters:"] + [f"  - file: {p}" for p in PAGES_AFTER]
    return "\n".join(lines) + "\n"


def write_toc(cfg: Config) -> Path:
    return atomic_write_text(book_dir(cfg) / "_toc.yml", toc(cfg))


def prepare_book(cfg: Config) -> Path:
    """For a scratch profile, copy the book's pages beside its executed notebooks."""
    dest = book_dir(cfg)
    if dest != BOOK:
        for p in BOOK.glob("*.md"):
            shutil.copy2(p, dest / p.name)
    write_tables(cfg)
    write_toc(cfg)
    return dest


def write_tables(cfg: Config) -> None:
    """Markdown tables generated from results files, included by the book's pages."""
    from .report import write_book_tables

    write_book_tables(cfg, book_dir(cfg) / "_generated")


def build_book(cfg: Config, strict: bool = True) -> Path:
    import subprocess

    dest = prepare_book(cfg)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(dest), "--config",
           str(PROJECT_ROOT / "_config.yml"), "--toc", str(dest / "_toc.yml"), "--path-output", str(dest)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    r = subprocess.run(cmd, cwd=PROJECT_ROOT)
    if r.returncode:
        raise AllrepError(f"jupyter-book build {dest} failed (exit {r.returncode}); see the log above")
    return dest / "_build" / "html"
