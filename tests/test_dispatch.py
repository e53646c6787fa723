"""The runner's dispatch helpers that need no pipeline run."""
import time
import warnings

import numpy as np
import pytest
from conftest import starts_backend
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import Matern

from allrep.runner.dispatch import gp_bound_warnings_counted, gp_note


def _bound_fit():
    """A fit whose length scale ends at its lower bound (noise on three points), as keras-tuner's do."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(3, 3))
    gp = GaussianProcessRegressor(kernel=Matern(nu=2.5, length_scale_bounds=(1e-5, 1e5)), n_restarts_optimizer=0,
                                  random_state=0)
    gp.fit(X, [0.0, 10.0, -10.0])


def test_gaussian_process_warnings_are_counted_not_printed():
    shown = []
    original = warnings.showwarning
    warnings.showwarning = lambda *a, **k: shown.append(a[0])
    try:
        with gp_bound_warnings_counted() as n:
            _bound_fit()
            _bound_fit()  # counted each time, not once per place
            warnings.warn("another warning", UserWarning)
    finally:
        warnings.showwarning = original
    assert n[0] >= 2
    assert [str(m) for m in shown] == ["another warning"]  # every other warning still shown
    assert gp_note("20_tuning", 1).startswith("20_tuning: 1 Gaussian-process fit of")
    assert "2 Gaussian-process fits" in gp_note("20_tuning", 2)


@starts_backend
def test_a_stopped_run_records_the_steps_it_finished_and_where_it_stopped(tmp_path, monkeypatch):
    """Ctrl-C in the third step: runs.json still gets this run, its finished steps' seconds, the stopped step's
    seconds so far and ``interrupted``; the interrupt reaches the caller."""
    import json

    import allrep.data.dataset as dataset
    from allrep.profile import load_profile
    from allrep.runner import pipeline
    from allrep.runner.registry import STEPS, other_output

    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("ALLREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dataset, "require_verified", lambda quick: None)
    monkeypatch.setattr(pipeline, "quiet_backend", lambda: None)
    monkeypatch.setattr(pipeline, "is_current", lambda cfg, step, params: False)
    done, scored = [], []

    def fake_step(cfg, runner, say, step, stale, todo, features_done, executed, times, t0):
        if len(done) == 2:  # the third step: its units take 0.3 s, then Ctrl-C 0.2 s into its notebooks
            time.sleep(0.3)
            times[f"{step.name}__units"] = time.perf_counter() - t0
            time.sleep(0.2)
            raise KeyboardInterrupt
        done.append(step.name)
        times[f"{step.name}__units"] = 1.0

    monkeypatch.setattr(pipeline, "_run_step", fake_step)
    monkeypatch.setattr(pipeline, "record_scorings", lambda cfg, step, stale, since=None: scored.append(
        (step.name, since)))
    began = time.time()
    with pytest.raises(KeyboardInterrupt):
        pipeline.run("smoke")
    run = json.loads(other_output("timings", load_profile("smoke")).read_text())[-1]
    third = sorted(s.name for s in STEPS)[2]
    assert run["interrupted"] is True and run["profile"] == "smoke"
    assert sorted(run["variants"]) == sorted([f"{done[0]}__units", f"{done[1]}__units", f"{third}__units",
                                              f"{third}__stopped"])
    assert 0.3 <= run["variants"][f"{third}__units"] < 0.6 and 0.15 <= run["variants"][f"{third}__stopped"] < 0.45
    assert len(scored) == 1 and scored[0][0] == third and began <= scored[0][1] <= time.time()
