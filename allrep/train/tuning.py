"""Nested Bayesian optimisation of the GRU head with keras-tuner, one search per split.

Every split (the paper split and each grouped repeat) gets its own search, on its own training
part, with its own grouped validation part as the objective (the best epoch's validation
cross-entropy, exactly as early stopping scores a member): no search sees a test image of its split.
The head's architecture is the recipe's (:mod:`allrep.train.recipe`); the search tunes what the recipe
study cannot fix once for all splits: learning rate, weight decay and dropout (:func:`space`).

keras-tuner's ``BayesianOptimizationOracle`` (Gaussian process, upper-confidence-bound acquisition)
proposes every trial. Its ``Tuner`` loop would train one model per trial; here the trials of many
searches share one pool of stacked heads instead (:func:`allrep.train.heads.run_pool`; the learning rate,
weight decay and dropout of each head are variables, so nothing traces again): each search has one
trial in flight, and the moment it ends the search proposes its next, which takes the first free slot.
Each search still sees only its own results, in order, so it is the same sequential Bayesian
optimisation it would be alone. Each trial is a plan of the member engine (:mod:`allrep.train.members`),
cached under its key; a rerun replays the same seeded proposals, finds them cached, and resumes where
a kill left it.
"""
from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import replace
from pathlib import Path

from allrep.profile import Head


def _kt():
    import keras_tuner

    return keras_tuner




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


class _Declared:
    """What :func:`_params` declares, read without keras-tuner: keras-tuner imports keras, which starts the backend
    (about 5 s of CPU), and the notebooks that only show the space or the tuned values need none of it. It takes
    ``Float`` as ``keras_tuner.HyperParameters`` does (a test compares the two) and records each declaration."""

    def __init__(self):
        self.floats: list[dict] = []

    def Float(self, name, min_value, max_value, step=None, sampling="linear", default=None):  # noqa: N802
        self.floats.append(dict(name=name, min_value=min_value, max_value=max_value, step=step, sampling=sampling))
        return min_value


def declared() -> list[dict]:
    """The search space's hyperparameters as :func:`_params` declares them: name, min_value, max_value, step,
    sampling."""
    hp = _Declared()
    _params(hp, Head())
    return hp.floats


def space_table():
    """The search space as a table (one row per hyperparameter), read off :func:`_params`."""
    import pandas as pd

    rows = []
    for c in declared():
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


class Trials:
    """Where trials train and are cached: the member engine (:mod:`allrep.train.members`), one plan per trial
    (the search's split without its test rows, the proposed head, the profile's training, the search's
    seed). ``searches``: name -> (backbone, split frame, seed)."""

    def __init__(self, cfg, searches: dict, ts):
        from allrep.train import members

        self.cfg, self.ts, self.m = cfg, ts, members
        self.searches = searches
        self.arrays = members.Arrays(cfg)

    def plan(self, name: str, hp: Head):
        backbone, split, seed = self.searches[name]
        return self.m.plan(backbone, split, hp, self.ts, seed, test=False)

    def cached(self, name: str, hp: Head):
        p = self.plan(name, hp)
        return self.m.load(self.cfg, p) if self.m.has(self.cfg, p) else None

    def task(self, name: str, hp: Head) -> dict:
        return self.arrays.task(self.plan(name, hp))

    def save(self, name: str, hp: Head, res: dict) -> None:
        p = self.plan(name, hp)
        self.m.save(self.cfg, p, res, self.arrays.reduction_sha256(p))

    def pool(self, name: str) -> tuple:
        return self.m.pool_key(self.arrays, self.plan(name, Head()))[0]  # the feature shape


class _Searches:
    """A :func:`allrep.train.heads.run_pool` source over searches: each search has at most one trial in
    flight; when it ends, the search's oracle learns its result and proposes the next. So each search
    is the sequential Bayesian optimisation it would be alone, whichever slots and neighbours its
    trials had."""

    def __init__(self, names, oracles, arch: Head, trials: int, engine):
        self.names, self.oracles, self.arch, self.trials, self.engine = list(names), oracles, arch, int(trials), engine
        self.t = {n: 0 for n in self.names}
        self.busy = set()
        self.rows = {n: [] for n in self.names}
        self.trained = 0

    def next(self):
        for n in self.names:
            while n not in self.busy and self.t[n] < self.trials:
                with contextlib.redirect_stdout(io.StringIO()):
                    trial = self.oracles[n].create_trial("allrep")
                if trial.status != "RUNNING":
                    self.t[n] = self.trials
                    break
                hp = _head(self.arch, dict(trial.hyperparameters.values))
                cached = self.engine.cached(n, hp)
                if cached is not None:
                    self._record(n, trial, cached)
                    continue
                self.busy.add(n)
                return (n, trial, hp), self.engine.task(n, hp)
        return None

    def done(self, tid, res) -> None:
        n, trial, hp = tid
        self.engine.save(n, hp, res)
        self.trained += 1
        self.busy.discard(n)
        self._record(n, trial, res)

    def _record(self, n, trial, res) -> None:
        _end(self.oracles[n], trial, res["best_val_loss"])
        self.rows[n].append(dict(trial=self.t[n], **trial.hyperparameters.values, val_loss=res["best_val_loss"],
                                 best_epoch=res["best_epoch"], epochs_run=res["epochs_run"]))
        self.t[n] += 1


def tune_splits(searches: dict, arch: Head, ts, trials: int, initial_points: int, folder: Path | str,
                engine) -> dict:
    """Run (or resume) one search per entry of ``searches`` (name -> seed), the trials of every search
    that shares a feature shape trained in one pool of stacked heads; ``engine`` trains and caches a
    trial (:class:`Trials`). Returns name -> dict(best=Head, best_loss, trials=[rows in trial order])."""
    from allrep.train import heads as training

    folder = Path(folder)
    oracles = {n: _oracle(trials, initial_points, seed, folder / "oracles", n) for n, seed in searches.items()}
    pools: dict = {}
    for n in searches:
        pools.setdefault(engine.pool(n), []).append(n)
    rows = {}
    for names in pools.values():
        src = _Searches(names, oracles, arch, trials, engine)
        training.run_pool(src, ts.epochs, ts.patience, ts.batch_size, ts.min_delta)
        rows.update(src.rows)
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


def hyperparameter_table(best):
    """The tuned hyperparameters of every (backbone, dataset, protocol), from the nested searches
    (step 20): the paper split's value, or the median and range over the grouped repeats' own
    searches, and how many searches ended on a bound of the space."""
    import pandas as pd

    if not len(best):
        return pd.DataFrame()
    bounds = {c["name"]: (c["min_value"], c["max_value"]) for c in declared()}
    rows = []
    for (bb, ds, proto), g in best.groupby(["backbone", "dataset", "protocol"], sort=True):
        row = dict(backbone=bb, dataset=ds, protocol=proto, searches=len(g))
        on_bound = []
        for k, (lo, hi) in bounds.items():
            v = g[k]
            row[k] = f"{v.iloc[0]:.3g}" if len(v) == 1 else f"{v.median():.3g} ({v.min():.3g} to {v.max():.3g})"
            n = int(((v <= lo * 1.02 + 1e-12) | (v >= hi * 0.98)).sum()) if k != "dropout" else 0
            if n:
                on_bound.append(f"{k} {n}")
        row["on a bound"] = ", ".join(on_bound) or "none"
        rows.append(row)
    return pd.DataFrame(rows)
