"""Where a head's training time goes, per recipe; prints one JSON line (scripts/benchmark.py, ``head_profile``).

    python scripts/profile_heads.py [--heads 16] [--epochs 6] [--recipes registered base projection]
    KERAS_BACKEND=jax python scripts/profile_heads.py ...   # the same on the JAX backend

Synthetic features of the recipes' shapes (timing only: nothing is learned or reported but seconds), the
training set of one ALL-IDB2 split with the profile's 8 views (1,328 rows, 336 validation rows), batch 128:

* ``registered``: 4 positions x 64 channels (the 8x8 map pooled to 2x2, PCA 64), no projection, GRU 64, dense 64;
* ``base``: 16 positions x 256 (4x4, PCA 256 whitened), a 128-wide projection, GRU 64, dense 64;
* ``projection``: 16 positions x 1,280 standardised channels (MobileNetV2's map at 4x4), a learned 64-wide
  projection, GRU 64, dense 64.

For each recipe it times ``--heads`` heads trained by the engine (:func:`allrep.train.heads.run_pool`, 16 stacked
slots) for ``--epochs`` epochs each, split into the compiled training step, the validation predictions, the
slots' weight traffic (load/get/set) and the dropout masks, and the rest (Python); then one training step at
tiny shapes (the per-step cost that does not grow with the arithmetic: dispatch), one step's arithmetic in
GFLOP/s beside a large matmul's, and one head trained by plain ``keras.Model.fit`` (``build_head``) for the same
epochs (its seconds per head).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

RECIPES = dict(registered=(4, 64, 0), base=(16, 256, 128), projection=(16, 1280, 64))  # (T, C, projection)
N_TRAIN, N_VAL, BATCH, UNITS, DENSE = 1328, 336, 128, 64, 64


def _tasks(n_heads, T, C, P, seed=0):
    from allrep.profile import Head

    rng = np.random.default_rng(seed)
    hp = Head(projection=P, gru_units=UNITS, dense_units=DENSE)
    X = rng.standard_normal((N_TRAIN + N_VAL, T, C)).astype(np.float32)
    y = rng.integers(0, 2, N_TRAIN + N_VAL)
    return [dict(X_train=X[:N_TRAIN], y_train=y[:N_TRAIN], X_val=X[N_TRAIN:], y_val=y[N_TRAIN:], hp=hp, seed=i)
            for i in range(n_heads)]


def engine(n_heads, epochs, T, C, P) -> dict:
    """Seconds per part of the engine's work for ``n_heads`` heads of one recipe, each trained ``epochs`` epochs."""
    import allrep.train.heads as H
    from allrep.train.head_lists import train_heads

    spent, calls, stack = defaultdict(float), defaultdict(int), []

    def timed(name, fn):
        def wrapper(*a, **k):  # exclusive time: a call's own seconds less those of the timed calls inside it
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                spent[name] += dt - stack.pop()
                calls[name] += 1
                if stack:
                    stack[-1] += dt
        return wrapper

    saved = {n: H.HeadsTrainer.__dict__[n] for n in ("step", "predict", "load", "get", "get_many", "set", "_masks")
             if n in H.HeadsTrainer.__dict__}
    parts = dict(step="training step", predict="validation predictions", load="weights traffic",
                 get="weights traffic", get_many="weights traffic", set="weights traffic", _masks="dropout masks")
    for n, fn in saved.items():
        setattr(H.HeadsTrainer, n, timed(parts[n], fn))
    try:
        tasks = _tasks(n_heads, T, C, P)
        train_heads(tasks[:1], 1, 1, BATCH)  # trace and compile outside the timing (the trainer is reused)
        spent.clear(), calls.clear()
        t0 = time.perf_counter()
        train_heads(tasks, epochs, epochs, BATCH, min_delta=np.inf)  # no improvement counts: exactly `epochs`
        total = time.perf_counter() - t0
    finally:
        for n, fn in saved.items():
            setattr(H.HeadsTrainer, n, fn)
    out = {k: round(v, 3) for k, v in spent.items()}
    out["python and the rest"] = round(total - sum(spent.values()), 3)
    return dict(seconds=round(total, 2), heads_per_second=round(n_heads / total, 3), steps=calls["training step"],
                seconds_per_step=round(spent["training step"] / max(calls["training step"], 1), 4), parts=out)


def step_seconds(K, T, C, P, U=UNITS, D=DENSE, reps=30) -> float:
    """Seconds of one compiled training step of K stacked heads at these shapes (after warm-up)."""
    from allrep.train.heads import HeadsTrainer

    tr = HeadsTrainer(T, C, (P, U, D), K, BATCH)
    x = np.zeros((BATCH, K, T, C), np.float32)
    y = np.zeros((BATCH, K), np.int64)
    for _ in range(3):
        tr.step(x, y)
    t0 = time.perf_counter()
    for _ in range(reps):
        tr.step(x, y)
    return (time.perf_counter() - t0) / reps


def keras_fit(epochs, T, C, P) -> float:
    """Seconds for one head trained by plain ``keras.Model.fit`` (build_head, Adam, batch 128) for ``epochs``."""
    import keras

    from allrep.train.backbones import build_head

    (t,) = _tasks(1, T, C, P)
    m = build_head(T, C, t["hp"])
    m.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    m.fit(t["X_train"], t["y_train"], batch_size=BATCH, epochs=1, verbose=0)  # trace outside the timing
    t0 = time.perf_counter()
    m.fit(t["X_train"], t["y_train"], batch_size=BATCH, epochs=epochs, verbose=0,
          validation_data=(t["X_val"], t["y_val"]))
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    a = ap.parse_args(argv)
    from allrep import repro

    repro.setup(0)
    import keras
    from bench_heads import flops_per_sample, matmul_gflops

    out = dict(backend=keras.backend.backend(), threads=os.cpu_count(), heads=a.heads, epochs=a.epochs,
               matmul_gflops_per_second=round(matmul_gflops(), 1), recipes={})
    tiny16 = step_seconds(16, 1, 8, 0, U=4, D=4)
    out["dispatch_seconds_per_step_K16"] = round(tiny16, 5)
    for name in a.recipes:
        T, C, P = RECIPES[name]
        r = engine(a.heads, a.epochs, T, C, P)
        s16 = step_seconds(16, T, C, P)
        gf = 3 * flops_per_sample(T, C, P, UNITS, DENSE) * BATCH * 16 / s16 / 1e9
        fit = keras_fit(a.epochs, T, C, P)
        r.update(sequence=[T, C], projection=P, step_seconds_K16=round(s16, 4), step_gflops_per_second=round(gf, 2),
                 step_seconds_K1=round(step_seconds(1, T, C, P), 4), keras_fit_seconds_per_head=round(fit, 2),
                 keras_fit_heads_per_second=round(1 / fit, 3))
        out["recipes"][name] = r
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
