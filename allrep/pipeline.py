"""The papermill runner and the book builder, over the step registry (:mod:`allrep.registry`).

For a profile, each step has variants (e.g. one per backbone and dataset); each variant is one
executed copy of the source notebook. A variant is skipped when its stamp (see
:func:`allrep.registry.stamp`) matches the one stored beside its executed copy, so a second run
executes nothing and a killed run resumes (members and features are cached below the notebook
level too). While a notebook executes, every results file its kernel reads or writes is logged;
a file the step did not declare fails the step.

The paper profile writes executed notebooks into ``book/executed``, the confirmatory profile into
``book/confirmatory``; any other profile into ``scratch/<profile>/book/executed``: a smoke run can never
overwrite the committed book. The book itself is :mod:`allrep.book`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import places
from .errors import AllrepError
from .io import atomic_write_json, atomic_write_text
from .profile import Profile, load_profile
from .registry import RUNNER_ENV, STEPS, Step, declared, executed_path, get_step, stamp, variant_id


def _stamp_path(nb: Path) -> Path:
    return nb.with_suffix(".stamp.json")


def is_current(cfg: Profile, step: Step, params: dict) -> bool:
    nb = executed_path(cfg, step, params)
    sp = _stamp_path(nb)
    return nb.is_file() and sp.is_file() and json.loads(sp.read_text()) == stamp(cfg, step, params)


def check_access(cfg: Profile, step: Step, params: dict, log: Path) -> None:
    """Every results file the kernel read must be a declared input (or an output it wrote first),
    every file it wrote a declared output."""
    if not log.is_file():
        return
    inputs = {str(p) for p in declared(cfg, step, params, "inputs")}
    outputs = {str(p) for p in declared(cfg, step, params, "outputs")}
    bad = []
    for line in log.read_text().splitlines():
        kind, path = json.loads(line)
        ok = path in outputs if kind == "write" else (path in inputs or path in outputs)
        if not ok:
            bad.append(f"{kind} {places.relative(path)}")
    if bad:
        raise AllrepError(f"{step.name} [{variant_id(params)}] touched results files its registry entry does not "
                          f"declare: {'; '.join(sorted(bad))} (declare them in allrep.registry.STEPS)")


def _provenance(cfg: Profile, params: dict, seconds: float) -> dict:
    from .repro import environment

    return dict(profile=cfg.name, parameters=params, seconds=round(seconds, 1), environment=environment(),
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def execute(cfg: Profile, step: Step, params: dict) -> Path:
    """Execute one variant with papermill; add provenance; check its file accesses; write its stamp."""
    import nbformat
    import papermill as pm

    dst = executed_path(cfg, step, params)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_suffix(".partial.ipynb")
    log = dst.with_suffix(".access.log")
    log.unlink(missing_ok=True)
    t0 = time.perf_counter()
    os.environ.update({"ALLREP_ACCESS_LOG": str(log), "ALLREP_QUIET": "1", RUNNER_ENV: "1"})  # the runner's kernel
    from .dispatch import quiet_stderr

    try:
        with quiet_stderr():  # the kernel's start-up chatter (TensorFlow, ipykernel); its errors land in the notebook
            pm.execute_notebook(str(step.notebook), str(partial), parameters=dict(profile=cfg.name, **params),
                                cwd=str(step.notebook.parent), kernel_name="python3", progress_bar=False,
                                log_output=False)
    except pm.PapermillExecutionError as e:
        raise AllrepError(f"{step.name} [{variant_id(params)}] failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                          f"(partial notebook kept at {places.relative(partial)})") from None
    finally:
        for var in ("ALLREP_ACCESS_LOG", "ALLREP_QUIET", RUNNER_ENV):
            os.environ.pop(var, None)
    try:
        check_access(cfg, step, params, log)
    finally:
        log.unlink(missing_ok=True)
    nb = nbformat.read(partial, as_version=4)
    nb.metadata["allrep"] = _provenance(cfg, params, time.perf_counter() - t0)
    pmeta = nb.metadata.get("papermill", {})  # paths relative to the project: nothing machine-specific in git
    pmeta["input_path"] = places.relative(step.notebook)
    pmeta["output_path"] = places.relative(dst)
    atomic_write_text(dst, nbformat.writes(nb))
    partial.unlink(missing_ok=True)
    from .book import is_development, present

    present(dst, step, params, cfg.name, development=is_development(cfg))  # the page as the book shows it
    atomic_write_json(_stamp_path(dst), stamp(cfg, step, params))
    return dst


def run(profile: str, steps=None, datasets=None, backbones=None, force: bool = False, log=None,
        workers: int | None = None, scheduler: str | None = None) -> dict:
    """Execute the pipeline in order; returns the executed and skipped variants and the seconds.

    Step by step: the variants whose stamps changed (all with ``force``) have their units run first
    (:mod:`allrep.dispatch`: in this process, or on a Dask cluster with ``workers`` local processes or
    at ``scheduler``), then their notebooks execute."""
    from . import dispatch

    cfg = load_profile(profile)
    from .seal import refusal

    if (refused := refusal(cfg)) is not None:
        raise AllrepError(refused)
    _absolute_env()
    for given, allowed, what in ((datasets, cfg.datasets, "dataset"), (backbones, cfg.use_backbones, "backbone")):
        unknown = sorted(set(given or ()) - set(allowed))
        if unknown:
            raise AllrepError(f"unknown {what} {', '.join(map(repr, unknown))}: profile {cfg.name} has "
                              f"{', '.join(allowed)}")
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
    verified = features_done = False
    with dispatch.session(workers, scheduler, desc=f"pipeline {cfg.name}") as runner:
        say = log or runner.progress.write
        for step in chosen:
            variants = [p for s, p in todo if s is step]
            stale = [p for p in variants if force or not is_current(cfg, step, p)]
            for p in variants:
                if p not in stale:
                    skipped.append(f"{step.name} [{variant_id(p)}]")
            if not stale:
                continue
            if not verified:
                from .data import require_verified

                require_verified(quick=False)  # every checksum, once, before any unit or notebook reads an image
                dispatch.quiet_backend()  # then the backend, whose start-up lines never reach the terminal
                verified = True
            t0 = time.perf_counter()
            if step.name in dispatch.FEATURE_STEPS and not features_done:
                bbs = sorted({p["backbone"] for s, p in todo if s.name in dispatch.FEATURE_STEPS})
                runner.features(cfg, dispatch.feature_units(cfg, bbs))
                features_done = True
            units = dispatch.step_units(cfg, step, stale)
            runner.units(cfg, step, units)
            if units or step.name in dispatch.FEATURE_STEPS:  # the work below the notebooks, as its own row
                times[f"{step.name}__units"] = time.perf_counter() - t0
            for (name, vid), dt in runner.notebooks(cfg, [(step, p) for p in stale], say).items():
                times[f"{name}__{vid}"] = dt
                executed.append(f"{name} [{vid}]")
            record_scorings(cfg, step, stale)
        total = time.perf_counter() - t_start
        workers_used = runner.workers
    _record_times(cfg, times, total, started, cache_start, workers_used)
    from .book import write_toc

    write_toc(cfg)
    (log or print)(f"pipeline {cfg.name}: {len(executed)} executed, {len(skipped)} skipped, {total:.0f}s"
                   + (f" on {workers_used} workers" if workers_used > 1 else ""))
    return dict(executed=executed, skipped=skipped, seconds=total, workers=workers_used)


def record_scorings(cfg: Profile, step: Step, variants: list[dict]) -> None:
    """The test-set ledger (:mod:`allrep.ledger`): a row per outer split of every test-prediction file the
    executed ``variants`` declare as outputs. Here, in the runner's process, so Dask workers never race on it."""
    from . import ledger
    from .registry import other_output

    written = sorted({p for v in variants for p in declared(cfg, step, v, "outputs")})
    ledger.record(other_output("ledger", cfg), places.output_dir(cfg), written, cfg.seed)


def _absolute_env() -> None:
    """Kernels run in notebooks/: make path settings given relative to here absolute."""
    import os

    for var in ("ALLREP_DATA", "ALLREP_WEIGHTS_DIR", "ALLREP_CACHE", "ALLREP_SCRATCH"):
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cache_census() -> dict:
    """How much work the cache already holds: feature files (one per image and backbone),
    ensemble members and from-scratch members. All zero: the run computes everything."""
    c = places.cache_dir()
    return dict(features=sum(1 for _ in c.glob("features/*/*.npz")), members=sum(1 for _ in c.glob("members/*/*.json")),
                scratch=sum(1 for _ in c.glob("scratch/*/*.json")))


def _record_times(cfg: Profile, times: dict, total: float, started: str, cache_start: dict | None = None,
                  workers: int = 1) -> None:
    """Append this run to ``timings/runs.json``: one entry per run that executed something,
    so a later run served from caches never hides what the computing run took."""
    from .registry import other_output
    from .repro import environment

    if not times:
        return
    path = other_output("timings", cfg)
    runs = json.loads(path.read_text()) if path.is_file() else []
    env = environment()
    runs.append(dict(started=started, profile=cfg.name, commit=env["commit"], backend=env["backend"],
                     machine=f"{env['cpus']} CPUs, {env['os']} {env['machine']}, accelerator: {env['accelerator']}", total_seconds=round(total, 1),
                     cache_at_start=cache_start, workers=workers,
                     variants={k: round(v, 1) for k, v in times.items()}))
    atomic_write_json(path, runs)
