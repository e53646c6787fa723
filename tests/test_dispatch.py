"""The runner's dispatch helpers that need no pipeline run."""
import warnings

import numpy as np
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
