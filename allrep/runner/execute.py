"""Execute one variant: papermill runs its notebook in a fresh kernel, the kernel's access to results files is
checked against the step's declaration, provenance goes into the notebook's metadata, and the stamp
(:mod:`allrep.runner.stamps`) is written beside it. How the book presents the page is the book's business
(:func:`allrep.book.pages.present_all`, called by ``allrep run`` after the runner).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from allrep.errors import AllrepError
from allrep.io import atomic_write_json, atomic_write_text
from allrep.profile import Profile
from allrep.record import places
from allrep.runner.registry import Step, declared, executed_path, variant_id
from allrep.runner.stamps import stamp


def without_iri_grammar() -> None:
    """Leave out jsonschema's optional IRI format checker. When the optional package ``rfc3987-syntax`` is installed
    (Jupyter's event schemas ask for it), importing jsonschema, which papermill and nbformat do, compiles its IRI
    grammar: about 1.6 s of CPU in every process that executes, reads or validates a notebook (each command, each
    test process). No notebook format allrep reads or writes declares an IRI; the checker is only what jsonschema
    leaves out when that package is missing. Must come before jsonschema's first import (``allrep`` commands call it
    first; so does the test suite's conftest); idempotent."""
    import sys

    sys.modules.setdefault("rfc3987_syntax", None)  # None in sys.modules: its import fails, as if not installed


RUNNER_ENV = "ALLREP_RUNNER"  # set by the runner (allrep run) for the kernels it starts
ACCESS_LOG = "ALLREP_ACCESS_LOG"  # where a runner's kernel logs the results files it touches (allrep.notebook)


def _stamp_path(nb: Path) -> Path:
    return nb.with_suffix(".stamp.json")


def stored_stamp(cfg: Profile, step: Step, params: dict) -> dict | None:
    """The stamp stored beside a variant's executed copy (None: never executed)."""
    nb = executed_path(cfg, step, params)
    sp = _stamp_path(nb)
    return json.loads(sp.read_text()) if nb.is_file() and sp.is_file() else None


def is_current(cfg: Profile, step: Step, params: dict) -> bool:
    return stored_stamp(cfg, step, params) == stamp(cfg, step, params)


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
                          f"declare: {'; '.join(sorted(bad))} (declare them in allrep.runner.registry.STEPS)")


def _provenance(cfg: Profile, params: dict, seconds: float) -> dict:
    from allrep.repro import environment  # imports keras: only once a notebook ran

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
    os.environ.update({ACCESS_LOG: str(log), "ALLREP_QUIET": "1", RUNNER_ENV: "1"})  # the runner's kernel
    from allrep.repro import quiet_stderr

    try:
        with quiet_stderr():  # the kernel's start-up chatter (TensorFlow, ipykernel); its errors land in the notebook
            pm.execute_notebook(str(step.notebook), str(partial), parameters=dict(profile=cfg.name, **params),
                                cwd=str(step.notebook.parent), kernel_name="python3", progress_bar=False,
                                log_output=False)
    except pm.PapermillExecutionError as e:
        raise AllrepError(f"{step.name} [{variant_id(params)}] failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                          f"(partial notebook kept at {places.relative(partial)})") from None
    finally:
        for var in (ACCESS_LOG, "ALLREP_QUIET", RUNNER_ENV):
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
    atomic_write_json(_stamp_path(dst), stamp(cfg, step, params))
    return dst
