"""One head-training workload, timed, for scripts/benchmark.py (``head_training``); prints one JSON line.

    python scripts/bench_heads.py --impl after|before [--profile paper] [--trials 3]

The workload is the paper profile's recipe for one backbone (MobileNetV2) on ALL-IDB1 and ALL-IDB2,
every split (paper + grouped repeats), on the cached features:

* tuning: one search per split, ``--trials`` trials each (the profile's 8 would take too long twice);
* ensemble members: the profile's members per split, with the committed tuned head of each split;
* plain heads: one per split with the profile's ``plain:`` settings.

``after`` runs each kind the way the runner now does (:func:`allrep.runner.dispatch.run_units`: every variant's
heads of a step in one pool of stacked heads, a freed slot refilled at once). ``before`` runs the same
heads the way the code of commit 3d86d16 did (one traced stack per variant and group, every head of a
group training until the group's slowest stopped, tuning searches in lockstep rounds); scripts/benchmark.py
puts that commit's package first on ``sys.path``. Both read the same cached features; nothing is cached
from the heads (timing only, no accuracy is reported).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def reduce_channels(X_train, *others, ts):
    """:class:`Reduction` fitted on ``X_train`` with the recipe ``ts`` (pool, pca, whiten), applied to every array."""
    from allrep.train.heads import Reduction

    f = Reduction.fit(X_train, ts.pool, ts.pca, ts.whiten)
    return tuple(f(X) for X in (X_train, *others))


def flops_per_sample(T: int, C: int, P: int, U: int, D: int) -> float:
    """Multiply-adds x 2 of one head's forward pass on one sample (projection, GRU input and recurrent
    matmuls, dense, output); a training step costs about 3 forward passes (forward + backward)."""
    inp = P or C
    return 2.0 * (T * C * P + T * inp * 3 * U + T * U * 3 * U + U * D + D * 2)


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of one large float32 matmul through keras.ops on the same cores (what the machine can do)."""
    import keras

    a = keras.ops.convert_to_tensor(np.random.default_rng(0).random((n, n), dtype=np.float32))
    keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
    t0 = time.perf_counter()
    for _ in range(reps):
        keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["before", "after"], required=True)
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--backbone", default="mobilenetv2")
    a = ap.parse_args(argv)
    import pandas as pd

    from allrep import repro
    from allrep.profile import load_profile

    cfg = load_profile(a.profile)
    repro.setup(cfg.seed)
    from allrep.profile import Head, load_section
    from allrep.train.features import for_backbone, split_arrays

    root = Path(__file__).resolve().parent.parent / "results"
    fc = for_backbone(cfg, a.backbone)
    splits = []
    for ds in ("IDB1", "IDB2"):
        best = pd.read_csv(root / "tuning" / f"best_{a.backbone}_{ds}.csv")
        for protocol in ("paper", "grouped"):
            frame = pd.read_csv(root / "splits" / f"{ds}_{protocol}.csv")
            for r, split in frame.groupby("repeat", sort=True):
                row = best[(best["protocol"] == protocol) & (best["repeat"] == r)].to_dict("records")[0]
                hp = load_section(Head, {k: row[k] for k in Head().to_dict()}, "best")
                splits.append((ds, protocol, int(r), split, hp))

    def arrays(split, ts):
        d = split_arrays(fc, split, cfg.features.views)
        Xtr, Xva, Xte = reduce_channels(d["train"][0], d["val"][0], d["test"][0], ts=ts)
        return dict(X_train=Xtr, y_train=d["train"][1], X_val=Xva, y_val=d["val"][1], X_test=Xte)

    ts, pts = cfg.training, cfg.plain.training
    main_arr = [arrays(s[3], ts) for s in splits]
    plain_arr = main_arr if (pts.pool, pts.pca, pts.whiten) == (ts.pool, ts.pca, ts.whiten) else \
        [arrays(s[3], pts) for s in splits]
    M = cfg.ensemble.members
    member_tasks = [dict(arr, hp=s[4], seed=1000 * i + m) for i, (s, arr) in enumerate(zip(splits, main_arr))
                    for m in range(M)]
    plain_tasks = [dict(arr, hp=cfg.plain.head, seed=7 + i) for i, arr in enumerate(plain_arr)]
    searches = {f"{s[0]}-{s[1]}-{s[2]}": dict(arr, seed=11 + i) for i, (s, arr) in enumerate(zip(splits, main_arr))}
    def by_ds(items):
        items = list(items)
        return {ds: [t for t, s in items if s[0] == ds] for ds in ("IDB1", "IDB2")}

    import allrep.train.heads as training
    from allrep.train.head_lists import train_heads

    out, counted = {}, {}
    # count the optimiser steps each head takes (for the arithmetic rate), whatever the implementation
    real_step = None
    if hasattr(training.HeadsTrainer, "step"):
        real_step = training.HeadsTrainer.step

        def step(self, x, y):
            counted["steps"] = counted.get("steps", 0) + 1
            counted["head_steps"] = counted.get("head_steps", 0) + self.K
            return real_step(self, x, y)

        training.HeadsTrainer.step = step
    else:
        real_epoch = training.HeadsTrainer.epoch

        def epoch(self, Xs, ys, perms):
            n = max(-(-len(x) // self.batch_size) for x in Xs)
            counted["steps"] = counted.get("steps", 0) + n
            counted["head_steps"] = counted.get("head_steps", 0) + n * self.K
            return real_epoch(self, Xs, ys, perms)

        training.HeadsTrainer.epoch = epoch

    def timed(kind, fn, n_heads):
        counted.clear()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        out[kind] = dict(heads=n_heads, seconds=round(dt, 2), heads_per_second=round(n_heads / dt, 3),
                         optimizer_steps=counted.get("steps", 0), head_steps=counted.get("head_steps", 0))

    if a.impl == "before":
        # what steps 30 and 32 and the tuner did at 3d86d16: per variant; members in groups of 15
        def members_before():
            for ds, tasks in by_ds(zip(member_tasks, [s for s in splits for _ in range(M)])).items():
                for i in range(0, len(tasks), 15):
                    train_heads(tasks[i:i + 15], ts.epochs, ts.patience, ts.batch_size, ts.min_delta)

        def plain_before():
            for ds, tasks in by_ds(zip(plain_tasks, splits)).items():
                train_heads(tasks, pts.epochs, pts.patience, pts.batch_size, cfg.plain.min_delta)

        def tuning_before():
            from allrep.train import tuning

            with tempfile.TemporaryDirectory() as tmp:
                for ds in ("IDB1", "IDB2"):
                    ss = {n: dict(s, key=n) for n, s in searches.items() if n.startswith(ds)}
                    tuning.tune_splits(ss, cfg.head, ts, a.trials, min(a.trials, cfg.tuning.initial_points), tmp)
    else:
        def members_before():  # the runner's serial path: one pool for every variant's members
            train_heads(member_tasks, ts.epochs, ts.patience, ts.batch_size, ts.min_delta)

        def plain_before():
            train_heads([dict(t, min_delta=cfg.plain.min_delta) for t in plain_tasks], pts.epochs,
                                 pts.patience, pts.batch_size, cfg.plain.min_delta)

        def tuning_before():
            from allrep.train import tuning

            class Memory:  # trials in memory: this times training, not the cache
                def __init__(self):
                    self.c = {}

                def cached(self, n, hp):
                    return self.c.get((n, hp))

                def task(self, n, hp):
                    return dict({k: v for k, v in searches[n].items() if k != "seed"}, hp=hp, seed=searches[n]["seed"])

                def save(self, n, hp, res):
                    self.c[(n, hp)] = res

                def pool(self, n):
                    return searches[n]["X_train"].shape[1:]

            with tempfile.TemporaryDirectory() as tmp:
                tuning.tune_splits({n: s["seed"] for n, s in searches.items()}, cfg.head, ts, a.trials,
                                   min(a.trials, cfg.tuning.initial_points), tmp, Memory())

    timed("tuning_trials", tuning_before, len(searches) * a.trials)
    timed("ensemble_members", members_before, len(member_tasks))
    timed("plain_heads", plain_before, len(plain_tasks))
    X0 = main_arr[0]["X_train"]
    T, C = X0.shape[1:]
    B = ts.batch_size
    for kind, hp in (("tuning_trials", cfg.head), ("ensemble_members", cfg.head), ("plain_heads", cfg.plain.head)):
        f = flops_per_sample(T, C, hp.projection, hp.gru_units, hp.dense_units)
        if kind == "plain_heads":
            Xp = plain_arr[0]["X_train"]
            f = flops_per_sample(Xp.shape[1], Xp.shape[2], hp.projection, hp.gru_units, hp.dense_units)
        o = out[kind]
        # every slot of every step computes a full batch (idle or finished heads included): that is the
        # arithmetic done; the useful part is what the heads that were still training needed
        o["gflops_per_second"] = round(3 * f * B * o["head_steps"] / o["seconds"] / 1e9, 2)
    print(json.dumps(dict(impl=a.impl, backbone=a.backbone, trials=a.trials, sequence=[int(T), int(C)], batch=B,
                          matmul_gflops_per_second=round(matmul_gflops(), 1), **out)))


if __name__ == "__main__":
    sys.exit(main())
