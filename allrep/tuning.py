"""Nested Bayesian optimisation of the GRU head with keras-tuner, one search per split.

Every split (the paper split and each grouped repeat) gets its own search, on its own training
part, with its own grouped validation part as the objective (the best epoch's validation
cross-entropy, exactly as early stopping scores a member): no search sees a test image of its split.
The head's architecture is the recipe's (:mod:`allrep.recipe`); the search tunes what the recipe
study cannot fix once for all splits: learning rate, weight decay and dropout (:func:`space`).

keras-tuner's ``BayesianOptimizationOracle`` (Gaussian process, upper-confidence-bound acquisition)
proposes every trial. Its ``Tuner`` loop would train one model per trial; here the searches of one
(backbone, dataset) advance in lockstep instead: round t takes trial t of every search and trains
them as heads of one traced model (:func:`allrep.training.train_heads`; the learning rate, weight
decay and dropout of each head are variables, so no round traces again). Each search still sees only
its own results, in order, so it is the same sequential Bayesian optimisation it would be alone.
Each trial's result is cached (keyed by the search and the proposed values); a rerun replays the
same seeded proposals, finds them cached, and resumes where a kill left it.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

from .io import atomic_write_json
from .profile import Head


def _kt():
    import keras_tuner

    return keras_tuner


ALGO = "nested-lockstep-1"  # part of every trial's cache key


def _params(hp, arch: Head) -> Head:
    """The search space, written once: :func:`space` and :func:`space_table` both read it. The learning
    rate's upper bound was raised from 1e-2 to 3e-2 because best values sat on it, and its lower bound from
    1e-4 to 3e-4 because, in the first nested run (validation only), rates below it took 100-200 epochs and
    never won a search, while every search's round waits for its slowest trial."""
    return replace(arch,
                   learning_rate=hp.Float("learning_rate", 3e-4, 3e-2, sampling="log"),
                   weight_decay=hp.Float("weight_decay", 1e-6, 1e-1, sampling="log"),
                   dropout=hp.Float("dropout", 0.0, 0.5, step=0.1))


def space():
    hp = _kt().HyperParameters()
    _params(hp, Head())
    return hp


def space_table():
    """The search space as a table (one row per hyperparameter), read off :func:`_params`."""
    import pandas as pd

    rows = []
    for h in space().space:
        c = h.get_config()
        rows.append(dict(hyperparameter=c["name"], kind="float",
                         values=f"{c['min_value']:g} to {c['max_value']:g}" + (f", step {c['step']:g}" if c.get("step") else ""),
                         sampling=c.get("sampling") or "linear"))
    return pd.DataFrame(rows)


def _oracle(trials: int, initial_points: int, seed: int, folder: Path, name: str):
    kt = _kt()
    oracle = kt.oracles.BayesianOptimizationOracle(objective=kt.Objective("val_loss", "min"), max_trials=int(trials),
                                                   num_initial_points=int(initial_points),
                                                   seed=int(seed) or 1,  # keras-tuner draws a random seed for 0
                                                   hyperparameters=space())
    shutil.rmtree(folder / name, ignore_errors=True)  # the oracle's own files: rewritten by the replay
    oracle._set_project_dir(str(folder), name)  # the public Tuner API sets it the same way
    return oracle


def tune_splits(searches: dict, arch: Head, ts, trials: int, initial_points: int, folder: Path | str) -> dict:
    """Run (or resume) one search per entry of ``searches``: name -> dict(X_train, y_train, X_val, y_val,
    seed, key). Returns name -> dict(best=Head, best_loss, trials=[rows])."""
    from .training import train_heads

    folder = Path(folder)
    oracles = {n: _oracle(trials, initial_points, s["seed"], folder / "oracles", n) for n, s in searches.items()}
    rows = {n: [] for n in searches}
    for t in range(int(trials)):
        pending = []
        for n, s in searches.items():
            with contextlib.redirect_stdout(io.StringIO()):
                trial = oracles[n].create_trial("allrep")
            if trial.status != "RUNNING":
                continue
            values = dict(trial.hyperparameters.values)
            path = folder / s["key"] / f"trial_{t:03d}.json"
            cached = json.loads(path.read_text()) if path.is_file() else None
            if cached is not None and cached["values"] == values:
                _end(oracles[n], trial, cached["val_loss"])
                rows[n].append(dict(trial=t, **values, val_loss=cached["val_loss"], best_epoch=cached["best_epoch"],
                                    epochs_run=cached["epochs_run"]))
            else:
                pending.append((n, trial, values, path))
        if not pending:
            continue
        tasks = [dict(X_train=searches[n]["X_train"], y_train=searches[n]["y_train"], X_val=searches[n]["X_val"],
                      y_val=searches[n]["y_val"], hp=_head(arch, values), seed=searches[n]["seed"])
                 for n, _, values, _ in pending]
        results = train_heads(tasks, ts.epochs, ts.patience, ts.batch_size, ts.min_delta)
        for (n, trial, values, path), r in zip(pending, results):
            rec = dict(values=values, val_loss=r["best_val_loss"], best_epoch=r["best_epoch"], epochs_run=r["epochs_run"])
            atomic_write_json(path, rec)
            _end(oracles[n], trial, rec["val_loss"])
            rows[n].append(dict(trial=t, **values, val_loss=rec["val_loss"], best_epoch=rec["best_epoch"],
                                epochs_run=rec["epochs_run"]))
    out = {}
    for n, o in oracles.items():
        best = o.get_best_trials(1)[0]
        out[n] = dict(best=_head(arch, best.hyperparameters.values), best_loss=float(best.score), trials=rows[n])
    return out


def _head(arch: Head, values: dict) -> Head:
    return replace(arch, learning_rate=float(values["learning_rate"]), weight_decay=float(values["weight_decay"]),
                   dropout=float(values["dropout"]))


def _end(oracle, trial, val_loss: float) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        oracle.update_trial(trial.trial_id, {"val_loss": float(val_loss)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
