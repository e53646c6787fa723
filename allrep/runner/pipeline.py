"""The runner: executes a profile's steps in order, over the step registry (:mod:`allrep.runner.registry`).

For a profile, each step has variants (e.g. one per backbone and dataset); each variant is one executed copy of
the source notebook (:mod:`allrep.runner.execute`). A variant is skipped when its stamp
(:mod:`allrep.runner.stamps`) matches the one stored beside its executed copy, so a second run executes nothing
and a killed run resumes (features and members are cached below the notebook level too). Where a run's files
go is :mod:`allrep.record.places`; a sealed run (:mod:`allrep.record.seal`) is refused.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from allrep.cache import census
from allrep.errors import AllrepError
from allrep.io import atomic_write_json
from allrep.profile import Profile, load_profile
from allrep.record import places
from allrep.repro import quiet_backend
from allrep.runner.execute import is_current
from allrep.runner.registry import STEPS, Step, declared, get_step, variant_id


def run(profile: str, steps=None, datasets=None, backbones=None, force: bool = False, log=None,
        workers: int | None = None, scheduler: str | None = None) -> dict:
    """Execute the pipeline in order; returns the executed and skipped variants and the seconds.

    Step by step: the variants whose stamps changed (all with ``force``) have their units run first
    (:mod:`allrep.runner.dispatch`: in this process, or on a Dask cluster with ``workers`` local processes or
    at ``scheduler``), then their notebooks execute."""
    from allrep.runner import dispatch

    cfg = load_profile(profile)
    from allrep.record.seal import refusal

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
    cache_start = census()
    executed, skipped, times = [], [], {}
    workers_used, total = workers or 1, None
    try:
        with dispatch.session(workers, scheduler, desc=f"pipeline {cfg.name}") as runner:
            workers_used = runner.workers
            _run_steps(cfg, runner, log or runner.progress.write, chosen, todo, force, executed, skipped, times)
            total = time.perf_counter() - t_start  # the work, not the cluster's shutdown
    except BaseException:  # a run stopped part-way (Ctrl-C, a failed notebook) still records the steps it finished
        _never_masking(_record_times, cfg, times, time.perf_counter() - t_start, started, cache_start, workers_used,
                       interrupted=True)
        raise
    _record_times(cfg, times, total, started, cache_start, workers_used)
    (log or print)(f"pipeline {cfg.name}: {len(executed)} executed, {len(skipped)} skipped, {total:.0f}s"
                   + (f" on {workers_used} workers" if workers_used > 1 else ""))
    return dict(executed=executed, skipped=skipped, seconds=total, workers=workers_used)


def _run_steps(cfg: Profile, runner, say, chosen: list, todo: list, force: bool, executed: list, skipped: list,
               times: dict) -> None:
    """Each chosen step's stale variants: its units on ``runner``, then its notebooks; seconds into ``times``."""
    from allrep.runner import dispatch

    verified = features_done = False
    for step in chosen:
        variants = [p for s, p in todo if s is step]
        stale = [p for p in variants if force or not is_current(cfg, step, p)]
        for p in variants:
            if p not in stale:
                skipped.append(f"{step.name} [{variant_id(p)}]")
        if not stale:
            continue
        if not verified:
            from allrep.data.dataset import require_verified

            require_verified(quick=False)  # every checksum, once, before any unit or notebook reads an image
            quiet_backend()  # then the backend, whose start-up lines never reach the terminal
            verified = True
        t0, began = time.perf_counter(), time.time()
        try:
            _run_step(cfg, runner, say, step, stale, todo, features_done, executed, times, t0)
        except BaseException:  # the step in progress: its seconds so far (past its units' row, if it got one), so a
            # stopped run shows where it stopped, and the test files it wrote before it stopped
            times[step.name + STOPPED] = time.perf_counter() - t0 - times.get(step.name + UNITS, 0.0)
            _never_masking(record_scorings, cfg, step, stale, since=began)
            raise
        features_done = features_done or step.name in dispatch.FEATURE_STEPS


def _never_masking(record, *args, **kwargs) -> None:
    """``record(*args, **kwargs)`` while an exception is on its way up: a failure to record is a warning, so the
    exception that stopped the run is the one the caller sees."""
    import warnings

    try:
        record(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure to record must not replace the real one
        warnings.warn(f"the stopped run could not be recorded: {e!r}", stacklevel=2)


def _run_step(cfg: Profile, runner, say, step: Step, stale: list, todo: list, features_done: bool, executed: list,
              times: dict, t0: float) -> None:
    """One step's stale variants: the features first if it is the first feature step, its units, its notebooks."""
    from allrep.runner import dispatch

    if step.name in dispatch.FEATURE_STEPS and not features_done:
        bbs = sorted({p["backbone"] for s, p in todo if s.name in dispatch.FEATURE_STEPS})
        runner.features(cfg, dispatch.feature_units(cfg, bbs))
    units = dispatch.step_units(cfg, step, stale)
    runner.units(cfg, step, units)
    if units or step.name in dispatch.FEATURE_STEPS:  # the work below the notebooks, as its own row
        times[step.name + UNITS] = time.perf_counter() - t0
    for (name, vid), dt in runner.notebooks(cfg, [(step, p) for p in stale], say).items():
        times[f"{name}__{vid}"] = dt
        executed.append(f"{name} [{vid}]")
    record_scorings(cfg, step, stale)


UNITS, STOPPED = "__units", "__stopped"  # runs.json rows besides a notebook's: a step's units, a stopped step


def recorded_runs(cfg: Profile) -> list[dict]:
    """The profile's recorded runs (``timings/runs.json``, :func:`_record_times`), oldest first; none without it."""
    from allrep.runner.registry import other_output

    path = other_output("timings", cfg)
    return json.loads(path.read_text()) if path.is_file() else []


def record_scorings(cfg: Profile, step: Step, variants: list[dict], since: float | None = None) -> None:
    """The test-set ledger (:mod:`allrep.record.ledger`): a row per outer split of every test-prediction file the
    executed ``variants`` declare as outputs (with ``since``, a time.time(): only those written after it, for a
    step stopped part-way). Here, in the runner's process, so Dask workers never race on it."""
    from allrep.record import ledger
    from allrep.runner.registry import other_output

    written = sorted({p for v in variants for p in declared(cfg, step, v, "outputs")})
    if since is not None:
        written = [p for p in written if p.is_file() and p.stat().st_mtime >= since]
    ledger.record(other_output("ledger", cfg), places.output_dir(cfg), written, cfg.seed)


def _absolute_env() -> None:
    """Kernels run in notebooks/: make path settings given relative to here absolute."""
    import os

    for var in ("ALLREP_DATA", "ALLREP_WEIGHTS_DIR", "ALLREP_CACHE", "ALLREP_SCRATCH"):
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _record_times(cfg: Profile, times: dict, total: float, started: str, cache_start: dict | None = None,
                  workers: int = 1, interrupted: bool = False) -> None:
    """Append this run to ``timings/runs.json``: one entry per run that executed something,
    so a later run served from caches never hides what the computing run took."""
    from allrep.repro import environment
    from allrep.runner.registry import other_output

    if not times:
        return
    runs = recorded_runs(cfg)
    env = environment()
    machine = f"{env['cpus']} CPUs, {env['os']} {env['machine']}, accelerator: {env['accelerator']}"
    runs.append(dict(started=started, profile=cfg.name, commit=env["commit"], backend=env["backend"],
                     machine=machine, total_seconds=round(total, 1), cache_at_start=cache_start, workers=workers,
                     variants={k: round(v, 1) for k, v in times.items()},
                     **({"interrupted": True} if interrupted else {})))
    atomic_write_json(other_output("timings", cfg), runs)
