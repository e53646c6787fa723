"""Seeded training of one ensemble member, and the per-member cache.

A member is a GRU head (frozen backbone, on cached features) or a whole hybrid
(fine-tune). Early stopping and the choice of epoch use the *validation* part of
the training split only; the test images are predicted once, at the end.
Reproducibility: ``keras.utils.set_random_seed(seed)`` before building and
fitting, data order drawn from ``numpy.random.default_rng(seed)``, and
``TF_DETERMINISTIC_OPS=1`` (set by :func:`allrep.repro.setup`) make the same
seed give the same probabilities on a CPU.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_save_npz, atomic_write_json
from .models import HeadParams, build_head, compile_model


@dataclass
class TrainSettings:
    epochs: int = 40
    batch_size: int = 32
    patience: int = 8
    pca: int = 0  # 0: raw channels; k: project channels on the top-k principal axes of the *training* features

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainSettings":
        d = dict(d or {})
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class _Shuffled:
    """A keras PyDataset with a seeded permutation per epoch (backend-agnostic)."""

    def __new__(cls, X, y, batch_size, seed):
        import keras

        class DS(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.rng = np.random.default_rng(seed)
                self.order = self.rng.permutation(len(X))

            def __len__(self):
                return int(np.ceil(len(X) / batch_size))

            def __getitem__(self, i):
                idx = self.order[i * batch_size:(i + 1) * batch_size]
                return X[idx], y[idx]

            def on_epoch_end(self):
                self.order = self.rng.permutation(len(X))

        return DS()


def pca_reduce(X_train, *others, k: int = 0):
    """Fit a PCA of the channels on the training features only; apply it to every array.

    A fixed, unsupervised projection before the learned one: no label and no
    validation or test image is used to fit it. Returns the arrays, float32."""
    if not k or k >= X_train.shape[-1]:
        return (X_train, *others)
    C = X_train.shape[-1]
    flat = X_train.reshape(-1, C).astype(np.float64)
    mean = flat.mean(0)
    rng = np.random.default_rng(0)
    rows = flat[rng.choice(len(flat), size=min(len(flat), 20000), replace=False)] - mean
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    comp = vt[:k].T
    scale = np.sqrt(((rows @ comp) ** 2).mean(0)) + 1e-6  # unit variance per component
    f = lambda X: (((X.reshape(-1, C) - mean) @ comp) / scale).reshape(*X.shape[:-1], k).astype(np.float32)
    return tuple(f(X) for X in (X_train, *others))


def fit_head(X_train, y_train, X_val, y_val, hp: HeadParams, ts: TrainSettings, seed: int, verbose: int = 0):
    """Train a GRU head; returns (model, history dict, best epoch)."""
    import keras

    keras.utils.set_random_seed(int(seed))
    model = compile_model(build_head(X_train.shape[1], X_train.shape[2], hp), hp)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=ts.patience, restore_best_weights=True)
    hist = model.fit(_Shuffled(X_train, y_train, ts.batch_size, seed), validation_data=(X_val, y_val),
                     epochs=ts.epochs, callbacks=[stop], verbose=verbose)
    h = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    best = int(np.argmin(h["val_loss"])) + 1 if h.get("val_loss") else len(h.get("loss", []))
    return model, h, best


def predict(model, X, batch_size: int = 64) -> np.ndarray:
    """p(ALL) for each row of X."""
    p = np.asarray(model.predict(X, batch_size=batch_size, verbose=0))
    return p[:, 1].astype(np.float64)


def train_member(X_train, y_train, X_val, y_val, X_test, hp: HeadParams, ts: TrainSettings, seed: int) -> dict:
    """One member: fit on train, stop on val, predict test. Returns arrays and metadata."""
    t0 = time.perf_counter()
    X_train, X_val, X_test = pca_reduce(X_train, X_val, X_test, k=ts.pca)
    model, hist, best = fit_head(X_train, y_train, X_val, y_val, hp, ts, seed)
    t1 = time.perf_counter()
    p_test = predict(model, X_test)
    p_val = predict(model, X_val)
    return dict(p_test=p_test, p_val=p_val, history=hist, best_epoch=best, epochs_run=len(hist.get("loss", [])),
                train_seconds=t1 - t0, predict_seconds=time.perf_counter() - t1, n_train=int(len(X_train)))


class MemberStore:
    """Members cached one file each (``<key>.npz`` + ``<key>.json``), written atomically."""

    def __init__(self, folder: Path | str):
        self.dir = Path(folder)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.npz", self.dir / f"{key}.json"

    def has(self, key: str) -> bool:
        a, b = self.paths(key)
        return a.is_file() and b.is_file()

    def save(self, key: str, result: dict, meta: dict) -> None:
        a, b = self.paths(key)
        atomic_save_npz(a, p_test=result["p_test"], p_val=result["p_val"])
        info = {k: v for k, v in result.items() if k not in ("p_test", "p_val")}
        atomic_write_json(b, {**meta, **info})  # json last: its presence marks the member complete

    def load(self, key: str) -> dict:
        a, b = self.paths(key)
        with np.load(a) as z:
            out = dict(p_test=z["p_test"], p_val=z["p_val"])
        out.update(json.loads(b.read_text()))
        return out


# ----------------------------------------------------------------------------- fine-tuning (GPU)
class FineTuner:
    """Fine-tune whole hybrids, reusing one compiled model across ensemble members.

    XLA compiles a new model for 25-190 s on the GPU, so members do not rebuild:
    each member restores the backbone's starting weights, re-initialises the head
    from its own seed, resets the optimiser state, and trains. ``unfreeze`` is the
    number of backbone layers (from the top) that train; -1 trains all of them.
    """

    def __init__(self, w, hp: HeadParams, ts: TrainSettings, unfreeze: int = -1):
        import keras

        from .models import build_hybrid

        self.hp, self.ts = hp, ts
        self.model = build_hybrid(w, hp, trainable_backbone=True)
        base = self.model.layers[1]
        if unfreeze >= 0:
            for layer in base.layers[: len(base.layers) - unfreeze]:
                layer.trainable = False
        self.start = [v.numpy() if hasattr(v, "numpy") else np.asarray(v) for v in self.model.weights]
        self.head = self.model.layers[-1]
        compile_model(self.model, hp)
        self._keras = keras

    def reset(self, seed: int) -> None:
        keras = self._keras
        for v, x in zip(self.model.weights, self.start):
            v.assign(x)
        keras.utils.set_random_seed(int(seed))
        fresh = build_head(self.head.input_shape[1], self.head.input_shape[2], self.hp)
        self.head.set_weights(fresh.get_weights())
        if self.model.optimizer.built:
            for v in self.model.optimizer.variables:
                v.assign(np.zeros(v.shape, dtype=v.dtype))

    def member(self, X_train, y_train, X_val, y_val, X_test, seed: int) -> dict:
        """X_*: preprocessed float images (n, s, s, 3)."""
        keras = self._keras
        t0 = time.perf_counter()
        self.reset(seed)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.ts.patience, restore_best_weights=True)
        hist = self.model.fit(_Shuffled(X_train, y_train, self.ts.batch_size, seed), validation_data=(X_val, y_val),
                              epochs=self.ts.epochs, callbacks=[stop], verbose=0)
        h = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        t1 = time.perf_counter()
        return dict(p_test=predict(self.model, X_test), p_val=predict(self.model, X_val), history=h,
                    best_epoch=int(np.argmin(h["val_loss"])) + 1, epochs_run=len(h["loss"]), train_seconds=t1 - t0,
                    predict_seconds=time.perf_counter() - t1, n_train=int(len(X_train)))
