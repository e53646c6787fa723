"""Where the pipeline's work runs: in this process (the default), or on a Dask cluster.

The runner (:func:`allrep.runner.pipeline.run`) goes through the steps in order. For each step it asks the
variants that must execute for their **units**, the expensive work below the notebook level that the
member engine caches (``units(ctx)`` in a step module: one tuning search, or one split's members), runs
them, then executes the variants' notebooks, which find every result cached and only read, score,
write and show. Before the first step that reads backbone features, the features themselves are a
set of units (one backbone, one slice of the images).

* :class:`Serial` runs a step's units together in this process: one call with all of them, so the
  heads of every variant share the largest pools of stacked heads (:mod:`allrep.train.members`).
* :class:`Cluster` runs the units as tasks of a ``dask.distributed`` cluster (a ``LocalCluster`` of
  ``workers`` processes, or a running scheduler at ``scheduler``), a few units per task (about two
  tasks per worker), and the notebooks of one step as tasks too. The cache must be on a filesystem every worker sees (``ALLREP_CACHE``); every cached file
  is written atomically, so a unit whose worker dies is simply run again by Dask on another worker and
  finds what the dead one finished.

Both write the same results files, byte for byte: a head's arithmetic does not depend on the heads that share
its stack (:func:`allrep.train.heads.run_pool`), and every process computes with the numeric settings that
:func:`allrep.repro.pin_numerics` sets before the backend starts (the command line does; so does every unit, on
whatever worker). Tested with a 2-worker smoke run, one worker killed, against a serial one.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
import warnings

from allrep.errors import AllrepError
from allrep.progress import bar
from allrep.repro import quiet_backend
from allrep.runner.registry import variant_id as _vid

FEATURE_STEPS = ("20_tuning", "30_ensemble", "32_plain")  # steps whose units read backbone features
FEATURE_CHUNKS = 4  # units per backbone for the features


def _no_inner_bars():
    """Units show no progress bars of their own (features, heads): the runner's bar counts units."""
    from unittest import mock

    return mock.patch.dict(os.environ, ALLREP_QUIET="1")


def step_units(cfg, step, params_list) -> list:
    """Every unit of the variants ``params_list`` of ``step`` ([] for a step without units)."""
    from allrep.runner.context import Context

    mod = importlib.import_module(step.module)
    if not hasattr(mod, "units"):
        return []
    return [u for p in params_list for u in mod.units(Context(step, cfg, p))]


@contextlib.contextmanager
def gp_bound_warnings_counted():
    """Count, instead of printing, scikit-learn's ConvergenceWarning from the Gaussian-process fits of the
    Bayesian searches (keras-tuner fits one per proposal; on a few noisy trials its length scale often ends
    at the lower bound 1e-05): printed by the thousand, they came between the progress bar's lines. Yields
    a one-element list holding the count; every other warning is shown as usual."""
    from sklearn.exceptions import ConvergenceWarning

    count = [0]
    gp = r"sklearn\.gaussian_process"
    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=ConvergenceWarning, module=gp)  # every fit, not once per place
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ConvergenceWarning) and "gaussian_process" in filename:
                count[0] += 1
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield count


def gp_note(step_name: str, n: int) -> str:
    """The runner's one line for ``n`` counted Gaussian-process warnings (:func:`gp_bound_warnings_counted`)."""
    return (f"{step_name}: {n} Gaussian-process fit{'s' if n != 1 else ''} of the Bayesian searches ended with a "
            "kernel parameter at its bound (scikit-learn ConvergenceWarning); the searches used those fits as they are")


def run_units(cfg, step_name: str, units: list) -> dict:
    """Run units of one step in this process (the step module's ``run_units``); returns how many, and how
    many Gaussian-process warnings they raised (:func:`gp_bound_warnings_counted`)."""
    from allrep.runner.registry import get_step

    quiet_backend()
    mod = importlib.import_module(get_step(step_name).module)
    with _no_inner_bars(), gp_bound_warnings_counted() as gp:
        mod.run_units(cfg, units)
    return dict(units=len(units), gp_warnings=gp[0])


def feature_units(cfg, backbones) -> list[tuple[str, list[str]]]:
    """(backbone, image ids) slices: every image of the profile's datasets, in every training view."""
    from allrep.data.dataset import manifest

    ids = sorted({it.id for ds in cfg.datasets for it in manifest(ds)})
    size = -(-len(ids) // FEATURE_CHUNKS)
    return [(bb, ids[i:i + size]) for bb in backbones for i in range(0, len(ids), size)]


def run_features(cfg, units) -> int:
    """Compute (or find cached) the features of each (backbone, ids) unit."""
    from allrep.data.dataset import manifest
    from allrep.train.features import for_backbone

    quiet_backend()
    by_id = {it.id: it for it in manifest("combined")}
    with _no_inner_bars():
        for bb, ids in units:
            for_backbone(cfg, bb).ensure([by_id[i] for i in ids], cfg.features.views)
    return len(units)


def execute_timed(cfg, step, params) -> float:
    """Execute one variant's notebook (:func:`allrep.runner.execute.execute`); returns its seconds."""
    from allrep.runner.execute import execute

    quiet_backend()  # a worker that ran no unit yet imports the backend here (provenance), silently
    t0 = time.perf_counter()
    execute(cfg, step, params)
    return time.perf_counter() - t0


class Serial:
    """Everything in this process, in order."""

    workers = 1

    def __init__(self, progress):
        self.progress = progress

    def features(self, cfg, units) -> None:
        self._add(len(units))
        for u in units:
            run_features(cfg, [u])
            self.progress.update(1)

    def units(self, cfg, step, units) -> None:
        from allrep.progress import attach

        if units:
            self._add(len(units))
            attach(self.progress)  # the bar counts the heads while the step's units run together
            try:
                done = run_units(cfg, step.name, units)  # one call: every variant's heads share the pools
            finally:
                attach(None)
            self.progress.update(len(units))
            self._note_gp(step, [done])

    def _note_gp(self, step, done: list) -> None:
        n = sum(d["gp_warnings"] for d in done)
        if n:
            self.progress.write(gp_note(step.name, n))

    def notebooks(self, cfg, variants, log) -> dict:
        self._add(len(variants))
        times = {}
        for step, params in variants:
            times[(step.name, _vid(params))] = execute_timed(cfg, step, params)
            self.progress.update(1)
            log(f"{step.name} [{_vid(params)}]: executed in {times[(step.name, _vid(params))]:.0f}s")
        return times

    def _add(self, n: int) -> None:
        self.progress.total = (self.progress.total or 0) + n
        self.progress.refresh()


class Cluster(Serial):
    """Units and notebooks as tasks of a Dask cluster (``client``)."""

    def __init__(self, progress, client):
        super().__init__(progress)
        self.client = client
        self.workers = len(client.scheduler_info().get("workers", {})) or 1

    def _gather(self, futures: dict, what: str) -> dict:
        from dask.distributed import as_completed

        out = {}
        for fut in as_completed(list(futures)):
            try:
                out[futures[fut]] = fut.result()
            except AllrepError:
                raise
            except Exception as e:  # noqa: BLE001 - name the unit that failed, then stop
                raise AllrepError(f"{what} {futures[fut]} failed on the cluster: {type(e).__name__}: {e}") from None
            self.progress.update(1)
        return out

    def features(self, cfg, units) -> None:
        self._add(len(units))
        futs = {self.client.submit(run_features, cfg, [u], pure=False): f"features {u[0]} [{i}]"
                for i, u in enumerate(units)}
        self._gather(futs, "unit")

    def units(self, cfg, step, units) -> None:
        """The units in tasks of a few each (about two tasks per worker): a task runs its units in one pool
        of stacked heads, whose slots idle when it holds fewer heads than slots."""
        if not units:
            return
        size = -(-len(units) // (2 * self.workers))
        chunks = [units[i:i + size] for i in range(0, len(units), size)]
        self._add(len(chunks))
        futs = {self.client.submit(run_units, cfg, step.name, c, pure=False): f"{step.name} units {i * size}-"
                f"{i * size + len(c) - 1}" for i, c in enumerate(chunks)}
        self._note_gp(step, list(self._gather(futs, "task").values()))

    def notebooks(self, cfg, variants, log) -> dict:
        self._add(len(variants))
        futs = {self.client.submit(execute_timed, cfg, s, p, pure=False): (s.name, _vid(p)) for s, p in variants}
        times = self._gather(futs, "notebook")
        for (name, vid), dt in sorted(times.items()):
            log(f"{name} [{vid}]: executed in {dt:.0f}s")
        return times


@contextlib.contextmanager
def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded processes whose numeric libraries keep the runner's
    threading: Dask's nanny would set ``OMP_NUM_THREADS=1`` and the like in every worker, and the channel
    reduction (a randomised SVD through BLAS) rounds differently with another thread count, so a unit
    would not compute exactly what it computes in a serial run."""
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 65536}}), \
            LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.ERROR) as cluster:
        yield cluster


@contextlib.contextmanager
def session(workers: int | None = None, scheduler: str | None = None, desc: str = "pipeline"):
    """The runner for a run: :class:`Serial` (default), or :class:`Cluster` on a ``LocalCluster`` of
    ``workers`` processes or on the running scheduler at ``scheduler``. Yields it; closes what it started."""
    progress = bar(total=0, desc=desc, unit="unit", leave=True)
    try:
        if not workers and not scheduler:
            yield Serial(progress)
            return
        from dask.distributed import Client

        if scheduler:
            with Client(scheduler) as client:
                yield Cluster(progress, client)
            return
        with local_cluster(workers) as cluster, Client(cluster) as client:
            yield Cluster(progress, client)
    finally:
        progress.close()
