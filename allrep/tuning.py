"""Bayesian optimisation of the GRU head with keras-tuner.

The whole search space is :meth:`HeadHyperModel.build`. The objective is the
validation loss (cross-entropy) on the validation part of the *training* split;
the test images are never seen. The tuner keeps its trials in
``<cache>/tuning/<backbone>-<dataset>`` with a fixed ``project_name``, so a killed
search resumes instead of restarting.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from .errors import AllrepError
from .models import HeadParams, build_head, compile_model
from .profile import load_section
from .training import TrainSettings

def _kt():
    import keras_tuner

    return keras_tuner


TRAINER = "allrep.training.train_ensemble, one head, best-epoch validation NLL"  # part of the tuner's cache key


def _params(hp) -> HeadParams:
    """The search space, written once: ``HeadHyperModel.build`` and :func:`space_table` both read it."""
    return HeadParams(
        projection=hp.Choice("projection", [32, 64, 128]),
        gru_units=hp.Choice("gru_units", [16, 32, 64]),
        dense_units=hp.Choice("dense_units", [16, 32, 64]),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.1),
        learning_rate=hp.Float("learning_rate", 1e-4, 3e-3, sampling="log"),
        weight_decay=hp.Float("weight_decay", 1e-5, 1e-2, sampling="log"),
    )


def space_table():
    """The search space as a table (one row per hyperparameter), read off :func:`_params`."""
    import pandas as pd

    hp = _kt().HyperParameters()
    _params(hp)
    rows = []
    for h in hp.space:
        c = h.get_config()
        if "values" in c:
            rows.append(dict(hyperparameter=c["name"], kind="choice", values=", ".join(map(str, c["values"])),
                             sampling=""))
        else:
            rows.append(dict(hyperparameter=c["name"], kind="float", values=f"{c['min_value']:g} to {c['max_value']:g}"
                             + (f", step {c['step']:g}" if c.get("step") else ""), sampling=c.get("sampling") or "linear"))
    return pd.DataFrame(rows)


def make_hypermodel(seq_len: int, channels: int, ts: TrainSettings, seed: int):
    """The search space (``build``) and how a trial trains (``fit``): exactly as an ensemble member
    does (:func:`allrep.training.train_ensemble` with one head, the member's fixed-shape batches
    and early stopping), from the same seed in every trial, so trials differ only in their
    hyperparameters. The objective is the best epoch's validation cross-entropy."""
    from dataclasses import replace

    from .training import train_ensemble

    kt = _kt()
    member_ts = replace(ts, pca=0)  # features arrive already projected

    class HeadHyperModel(kt.HyperModel):
        def build(self, hp):
            p = _params(hp)
            return compile_model(build_head(seq_len, channels, p), p)

        def fit(self, hp, model, X, y, validation_data=None, epochs=None, **kwargs):
            Xv, yv = validation_data
            res = train_ensemble(X, y, Xv, yv, Xv[:1], _params(hp), replace(member_ts, epochs=int(epochs or ts.epochs)),
                                 [seed], reuse=False)[0]
            return {"val_loss": float(min(res["history"]["val_loss"]))}

    return HeadHyperModel()


def tune(X_train, y_train, X_val, y_val, ts: TrainSettings, trials: int, initial_points: int, seed: int,
         directory: Path | str, project: str, executions_per_trial: int = 1, epochs: int | None = None) -> dict:
    """Run (or resume) the search; returns the best hyperparameters and the trial table."""
    import keras

    kt = _kt()
    keras.utils.set_random_seed(int(seed))
    with contextlib.redirect_stdout(io.StringIO()):
        tuner = kt.BayesianOptimization(
            make_hypermodel(X_train.shape[1], X_train.shape[2], ts, seed), objective="val_loss",
            max_trials=int(trials), num_initial_points=int(initial_points), seed=int(seed),
            executions_per_trial=int(executions_per_trial), directory=str(directory), project_name=project,
            overwrite=False)
    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from <cache path>" is not content
        tuner.search(X_train, y_train, validation_data=(X_val, y_val), epochs=int(epochs or ts.epochs), verbose=0)
    rows = []
    for t in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):  # reloaded trials come unordered
        rows.append(dict(trial=t.trial_id, status=str(t.status), val_loss=t.score, **t.hyperparameters.values))
    done = [r for r in rows if r["status"] == "COMPLETED" and r["val_loss"] is not None]
    if not done:
        raise AllrepError(f"tuning {project}: no trial completed ({len(rows)} failed; see the tuner log in the cache's tuning folder)")
    best = tuner.get_best_hyperparameters(1)[0].values
    return dict(best=load_section(HeadParams, best, "tuned hyperparameters").to_dict(), trials=rows)
