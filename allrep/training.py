"""Seeded training of one ensemble member, and the per-member cache.

A member is a GRU head (frozen backbone, on cached features) or a whole hybrid
(fine-tune). Early stopping and the choice of epoch use the *validation* part of
the training split only; the test images are predicted once, at the end.
Reproducibility: ``keras.utils.set_random_seed(seed)`` before building and
fitting, data order drawn from ``numpy.random.default_rng(seed)``, and
``TF_DETERMINISTIC_OPS=1`` (set by :func:`allrep.repro.setup`) make the same
seed give the same probabilities on a CPU. The members of one split train
together in one model (:func:`train_ensemble`), each with its own
initialisation, data order and early stopping.
"""
from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import keras
import numpy as np

from .io import atomic_save_npz, atomic_write_json
from .models import HeadParams, build_head, compile_model
from .profile import Training


TrainSettings = Training  # the profile's `training:` section (allrep.profile.Training)


class Shuffled(keras.utils.PyDataset):
    """Batches of (X, y) in a seeded permutation, a new one every epoch (backend-agnostic; used for images).

    ``transform(x, rng)``, if given, maps each batch of inputs (e.g. online augmentation and
    preprocessing), drawing its randomness from the same seeded generator."""

    def __init__(self, X, y, batch_size: int, seed: int, transform=None):
        super().__init__()
        self.X, self.y, self.batch_size, self.transform = X, y, int(batch_size), transform
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(X))

    def __len__(self):
        return int(np.ceil(len(self.X) / self.batch_size))

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.X[idx]
        return (x if self.transform is None else self.transform(x, self.rng)), self.y[idx]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.X))


def predict_padded(model, X, block: int, copies: int = 1) -> list:
    """Every output's predictions for X, in zero-padded blocks of ``block`` rows, so the model is
    only ever called on one input shape (no retracing); ``copies``: inputs that all receive X."""
    n, blocks = len(X), []
    for i in range(0, n, block):
        x = X[i:i + block]
        if len(x) < block:
            x = np.concatenate([x, np.zeros((block - len(x), *x.shape[1:]), x.dtype)])
        out = model.predict_on_batch([x] * copies if copies > 1 else x)
        blocks.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate([b[k] for b in blocks])[:n] for k in range(len(blocks[0]))]


def copy_state(target, source) -> None:
    """Give ``target`` every variable of the identically built ``source``: weights, BatchNorm
    statistics and dropout seed-generator states (``variables``, not just ``weights``)."""
    import keras

    for v, f in zip(target.variables, source.variables, strict=True):
        v.assign(keras.ops.convert_to_numpy(f))


def repool(X, k: int):
    """Average-pool a batch of square feature sequences (n, h*h, c) by k x k (ceil, as the cache's pooling)."""
    if k <= 1:
        return X
    from .features import pool_map

    n, L, c = X.shape
    h = int(round(L ** 0.5))
    if h * h != L:
        raise ValueError(f"sequence of {L} positions is not a square feature map")
    P = pool_map(X.reshape(n, h, h, c), k)
    return P.reshape(n, -1, c)


class Reduction:
    """The recipe's fixed input reduction, fitted on training features only: ``pool`` further pools the
    cached map, then the channels go onto ``k`` principal axes (``whiten``: each scaled to unit
    variance; otherwise one common scale). No label and no validation or test image is used to fit it.
    Saved with a final model (:meth:`state`), so prediction applies exactly what training did."""

    def __init__(self, pool: int = 1, mean=None, comp=None, scale=None):
        self.pool, self.mean, self.comp, self.scale = int(pool), mean, comp, scale

    @classmethod
    def fit(cls, X_train, pool: int = 1, k: int = 0, whiten: bool = True) -> Reduction:
        X = repool(X_train, pool)
        if not k or k >= X.shape[-1]:
            return cls(pool)
        from sklearn.utils.extmath import randomized_svd

        C = X.shape[-1]
        flat = X.reshape(-1, C)
        mean = flat.mean(0, dtype=np.float64).astype(np.float32)
        rng = np.random.default_rng(0)
        rows = (flat[rng.choice(len(flat), size=min(len(flat), 8000), replace=False)] - mean).astype(np.float32)
        _, _, vt = randomized_svd(rows, n_components=k, n_iter=4, random_state=0)
        comp = np.ascontiguousarray(vt.T, dtype=np.float32)
        proj = rows @ comp
        # whitened: unit variance per axis; otherwise one common scale (unit mean variance) keeps the spectrum
        scale = ((proj.std(0) + 1e-6) if whiten else np.full(k, proj.std() + 1e-6)).astype(np.float32)
        return cls(pool, mean, comp, scale)

    def __call__(self, X):
        X = repool(X, self.pool)
        if self.comp is None:
            return X
        C, k = self.comp.shape
        return (((X.reshape(-1, C).astype(np.float32) - self.mean) @ self.comp) / self.scale).reshape(*X.shape[:-1], k)

    def state(self) -> dict:
        return dict(pool=np.int64(self.pool), **({} if self.comp is None else
                                                 dict(mean=self.mean, comp=self.comp, scale=self.scale)))

    @classmethod
    def from_state(cls, z) -> Reduction:
        return cls(int(z["pool"]), *((z["mean"], z["comp"], z["scale"]) if "comp" in z else ()))


def reduce_channels(X_train, *others, ts: TrainSettings):
    """:class:`Reduction` fitted on ``X_train`` with the recipe ``ts`` (pool, pca, whiten), applied to every array."""
    f = Reduction.fit(X_train, ts.pool, ts.pca, ts.whiten)
    return tuple(f(X) for X in (X_train, *others))


def pca_reduce(X_train, *others, k: int = 0, whiten: bool = True):
    """Fit a PCA of the channels on the training features only; apply it to every array (:class:`Reduction`)."""
    f = Reduction.fit(X_train, 1, k, whiten)
    return tuple(f(X) for X in (X_train, *others))


def _nll(y, p2) -> float:
    p = np.clip(np.asarray(p2, dtype=np.float64)[np.arange(len(y)), np.asarray(y, dtype=int)], 1e-7, 1.0)
    return float(-np.log(p).mean())


def _reset_optimizer(optimizer) -> None:
    """Zero the optimiser's state (step counter and moments), keeping its learning rate and its
    per-head settings: a fresh optimiser."""
    if optimizer.built:
        for v in optimizer.variables:
            if v.name not in ("learning_rate", "head_lr", "head_wd"):
                v.assign(np.zeros(v.shape, dtype=v.dtype))


ATTRS = dict(proj_kernel="wp", proj_bias="bp", gru_kernel="wx", gru_recurrent="wh", gru_bias="b",
             dense_kernel="w1", dense_bias="b1", probs_kernel="w2", probs_bias="b2")


class HeadsTrainer:
    """K GRU heads of one architecture, stacked in one compiled Keras model (:mod:`allrep.stacked`), each
    with its own data, initialisation, data order, learning rate, weight decay and dropout; reused across
    tasks.

    On a CPU the cost of small heads is the number of operations and graph tracing, not arithmetic: the
    stack computes K heads in the operations of one, and is traced once and reused. :meth:`reset` gives
    every head the initial weights its seed draws, its rates and dropout stream, and a fresh optimiser;
    every training batch has one shape (a head's epoch permutation is cycled to fill the steps of the
    longest training set in the group) and predictions are made in padded blocks of one shape, so nothing
    is traced again. A reused trainer gives the same probabilities as a new one (tests/test_training.py).
    """

    def __init__(self, seq_len: int, channels: int, arch: tuple, K: int, batch_size: int):
        from . import stacked

        self.shape, self.arch, self.K, self.batch_size = (int(seq_len), int(channels)), tuple(arch), int(K), int(batch_size)
        self.model, self.layer = stacked.build(self.K, self.shape[0], self.shape[1], *self.arch)
        self.names = [n for n in ATTRS if hasattr(self.layer, ATTRS[n])]

    def reset(self, hps, seeds) -> None:
        """Head k gets the initial weights its seed draws (:func:`allrep.stacked.initial_weights`), the
        dropout rate, learning rate and weight decay of ``hps[k]``, its own dropout stream; the optimiser restarts."""
        from .stacked import initial_weights

        p, u, d = self.arch
        init = [initial_weights(int(s), self.shape[1], p, u, d) for s in seeds]
        for n in self.names:
            getattr(self.layer, ATTRS[n]).assign(np.stack([w[n] for w in init]))
        self.rates = np.array([hp.dropout for hp in hps], np.float32)
        self.layer.rate.assign(self.rates)
        self.mask_rngs = [np.random.default_rng([int(s), 1]) for s in seeds]  # each head's dropout stream
        opt = self.model.optimizer
        _reset_optimizer(opt)
        opt.head_lr.assign(np.array([hp.learning_rate for hp in hps], np.float32))
        opt.head_wd.assign(np.array([hp.weight_decay for hp in hps], np.float32))

    def get(self, k: int) -> dict:
        """Head k's current weights (name -> array)."""
        return {n: np.array(getattr(self.layer, ATTRS[n]).numpy()[k]) for n in self.names}

    def set(self, weights: list) -> None:
        """Every head's weights at once (a list of :meth:`get` dicts)."""
        for n in self.names:
            getattr(self.layer, ATTRS[n]).assign(np.stack([w[n] for w in weights]))

    def predict(self, Xs) -> list:
        """Head k's (n_k, 2) probabilities on ``Xs[k]``, in padded blocks of ``batch_size`` rows."""
        n = max(len(x) for x in Xs)
        B = self.batch_size
        total = -(-n // B) * B
        pad = [np.concatenate([x, np.zeros((total - len(x), *x.shape[1:]), np.float32)]) if len(x) < total else x
               for x in Xs]
        out, ones = [], self._masks(np.ones)
        for i in range(0, total, B):
            out.append(np.asarray(self.model.predict_on_batch([np.stack([x[i:i + B] for x in pad], axis=1), *ones])))
        P = np.concatenate(out)  # (total, K, 2)
        return [P[:len(x), k] for k, x in enumerate(Xs)]

    def epoch(self, Xs, ys, perms) -> None:
        """One epoch: head k sees its training set in the order ``perms[k]``, cycled to the group's steps."""
        B = self.batch_size
        steps = max(-(-len(x) // B) for x in Xs)
        idx = [np.resize(p, steps * B) for p in perms]
        for i in range(steps):
            b = [p[i * B:(i + 1) * B] for p in idx]
            self.model.train_on_batch([np.stack([x[j] for x, j in zip(Xs, b)], axis=1), *self._masks()],
                                      np.stack([y[j] for y, j in zip(ys, b)], axis=1))

    def _masks(self, fill=None) -> list:
        """Dropout masks for one batch, (B, K, units) and (B, K, dense): head k's drawn from its own
        generator with keep probability 1 - its rate (``fill``: constant masks, for prediction)."""
        B, (_, u, d) = self.batch_size, self.arch
        if fill is not None:
            return [fill((B, self.K, u), np.float32), fill((B, self.K, d), np.float32)]
        out = []
        for width in (u, d):
            m = np.stack([(g.random((B, width)) >= r).astype(np.float32) for g, r in zip(self.mask_rngs, self.rates)], axis=1)
            out.append(m)
        return out


@lru_cache(maxsize=2)
def heads_trainer(seq_len: int, channels: int, arch: tuple, K: int, batch_size: int) -> HeadsTrainer:
    """The last :class:`HeadsTrainer` built for these shapes, reused while they stay the same."""
    return HeadsTrainer(seq_len, channels, arch, K, batch_size)


def train_heads(tasks, epochs: int, patience: int, batch_size: int, min_delta: float = 0.0, reuse: bool = True,
                max_heads: int = 16, keep_weights: bool = False) -> list[dict]:
    """Train one head per task, in groups of at most ``max_heads`` heads traced as one model.

    A task is a dict: ``X_train, y_train, X_val, y_val`` (arrays already reduced), ``X_test``
    (optional), ``hp`` (:class:`Head`; every task of a call shares its architecture) and ``seed``.
    Each head has its own initialisation and data order (``default_rng(seed)`` permutes its training
    set every epoch) and its own early stopping: its validation NLL is tracked every epoch, its best
    weights kept, and it stops counting after ``patience`` epochs without an improvement larger than
    ``min_delta``; a group ends when every head has stopped or at ``epochs``. ``keep_weights``: each
    result also holds its head's restored (best-epoch) weights, for saving a final model.
    """
    tasks = list(tasks)
    arch = {(t["hp"].projection, t["hp"].gru_units, t["hp"].dense_units) for t in tasks}
    if len(arch) != 1:
        raise ValueError(f"tasks trained together share one head architecture, got {sorted(arch)}")
    arch = arch.pop()
    out = []
    n_groups = -(-len(tasks) // max_heads)
    size = -(-len(tasks) // n_groups) if tasks else 0
    for g in range(n_groups):
        out += _train_group(tasks[g * size:(g + 1) * size], arch, epochs, patience, batch_size, min_delta, reuse,
                            keep_weights)
    return out


def _train_group(tasks, arch, epochs, patience, batch_size, min_delta, reuse, keep_weights=False) -> list[dict]:
    t0 = time.perf_counter()
    K = len(tasks)
    X0 = tasks[0]["X_train"]
    args = (X0.shape[1], X0.shape[2], arch, K, batch_size)
    tr = heads_trainer(*args) if reuse else HeadsTrainer(*args)
    tr.reset([t["hp"] for t in tasks], [t["seed"] for t in tasks])
    Xs, ys = [t["X_train"] for t in tasks], [t["y_train"] for t in tasks]
    Xv, yv = [t["X_val"] for t in tasks], [t["y_val"] for t in tasks]
    rngs = [np.random.default_rng(int(t["seed"])) for t in tasks]
    best = [np.inf] * K
    best_w = [tr.get(k) for k in range(K)]
    best_epoch, stopped_at, wait = [0] * K, [None] * K, [0] * K
    hist = [dict(val_loss=[]) for _ in range(K)]
    epoch = 0
    for epoch in range(1, epochs + 1):
        tr.epoch(Xs, ys, [r.permutation(len(x)) for r, x in zip(rngs, Xs)])
        pv = tr.predict(Xv)
        for k in range(K):
            if stopped_at[k] is not None:
                continue
            loss = _nll(yv[k], pv[k])
            hist[k]["val_loss"].append(loss)
            if loss < best[k] - min_delta:  # an improvement of min_delta or less does not count
                best[k], best_epoch[k], wait[k] = loss, epoch, 0
                best_w[k] = tr.get(k)
            else:
                wait[k] += 1
                if wait[k] >= patience:
                    stopped_at[k] = epoch
        if all(s is not None for s in stopped_at):
            break
    tr.set(best_w)
    t1 = time.perf_counter()
    pv = tr.predict(Xv)
    pt = tr.predict([t["X_test"] if t.get("X_test") is not None else t["X_val"][:1] for t in tasks])
    return [dict(p_test=pt[k][:, 1].astype(np.float64) if tasks[k].get("X_test") is not None else None,
                 p_val=pv[k][:, 1].astype(np.float64), history=hist[k], best_epoch=best_epoch[k],
                 best_val_loss=float(best[k]), epochs_run=stopped_at[k] or epoch, train_seconds=(t1 - t0) / K,
                 trained_with=K, n_train=int(len(Xs[k])), **({"weights": best_w[k]} if keep_weights else {}))
            for k in range(K)]


def train_ensemble(X_train, y_train, X_val, y_val, X_test, hp: HeadParams, ts: TrainSettings, seeds,
                   reuse: bool = True, min_delta: float | None = None) -> list[dict]:
    """M members on one split (:func:`train_heads` with one task per seed), after the split's channel
    reduction (:func:`reduce_channels`, fitted on its training features only)."""
    X_train, X_val, X_test = reduce_channels(X_train, X_val, X_test, ts=ts)
    tasks = [dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test, hp=hp, seed=int(s))
             for s in seeds]
    md = ts.min_delta if min_delta is None else min_delta
    return train_heads(tasks, ts.epochs, ts.patience, ts.batch_size, md, reuse=reuse)


def ended_by(epochs_run: int, best_epoch: int, patience: int) -> str:
    """What ended a member's training (:func:`train_ensemble`): "early stopping" (``patience`` epochs
    without a better validation loss) or "epoch cap" (the last epoch came while patience had not run out)."""
    return "early stopping" if epochs_run == best_epoch + patience else "epoch cap"


def convergence(members):
    """Per ensemble (backbone, dataset, protocol): members ended by early stopping and by the epoch cap."""
    t = members.groupby(["backbone", "dataset", "protocol", "ended_by"]).size().unstack("ended_by", fill_value=0)
    for col in ("early stopping", "epoch cap"):
        if col not in t:
            t[col] = 0
    return t[["early stopping", "epoch cap"]].reset_index()


def predict(model, X, batch_size: int = 64) -> np.ndarray:
    """p(ALL) for each row of X."""
    p = np.asarray(model.predict(X, batch_size=batch_size, verbose=0))
    return p[:, 1].astype(np.float64)


def train_member(X_train, y_train, X_val, y_val, X_test, hp: HeadParams, ts: TrainSettings, seed: int) -> dict:
    """One member alone: :func:`train_ensemble` with a single head."""
    return train_ensemble(X_train, y_train, X_val, y_val, X_test, hp, ts, [seed])[0]


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
        copy_state(self.head, build_head(self.head.input_shape[1], self.head.input_shape[2], self.hp))
        _reset_optimizer(self.model.optimizer)

    def member(self, X_train, y_train, X_val, y_val, X_test, seed: int) -> dict:
        """X_*: preprocessed float images (n, s, s, 3)."""
        keras = self._keras
        t0 = time.perf_counter()
        self.reset(seed)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.ts.patience, restore_best_weights=True)
        hist = self.model.fit(Shuffled(X_train, y_train, self.ts.batch_size, seed), validation_data=(X_val, y_val),
                              epochs=self.ts.epochs, callbacks=[stop], verbose=0)
        h = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        t1 = time.perf_counter()
        return dict(p_test=predict(self.model, X_test), p_val=predict(self.model, X_val), history=h,
                    best_epoch=int(np.argmin(h["val_loss"])) + 1, epochs_run=len(h["loss"]), train_seconds=t1 - t0,
                    predict_seconds=time.perf_counter() - t1, n_train=int(len(X_train)))
