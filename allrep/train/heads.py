"""Seeded training of GRU heads on cached features, in pools of stacked heads.

A head (an ensemble member, a plain head, a tuning trial...) trains on frozen-backbone features (whole
hybrids are fine-tuned by ``scripts/gpu_members.py``; from scratch by :mod:`allrep.train.scratch`). Early stopping and the choice of epoch use the *validation* part of
the training split only; the test images are predicted once, at the end. Reproducibility: initial
weights drawn from the head's seed, data order from ``numpy.random.default_rng(seed)``, dropout masks
from their own seeded generator, and the pinned numerics (:func:`allrep.repro.pin_numerics`, which every
command and worker applies before the backend starts) make the same seed give the same probabilities on a CPU. Heads train in pools (:func:`run_pool`);
what to train and where it is cached is the member engine's business (:mod:`allrep.train.members`).
"""
from __future__ import annotations

import time
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=None)
def _shuffled_class():
    """The PyDataset below, built on first use: a module-level ``keras`` import would start the backend (about 5 s
    of CPU) in every notebook that only reads cached heads."""
    import keras

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

    return Shuffled


def __getattr__(name: str):
    """``heads.Shuffled``, the class of :func:`_shuffled_class`, imported as if defined here (PEP 562)."""
    if name == "Shuffled":
        return _shuffled_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from allrep.train.features import pool_map

    n, L, c = X.shape
    h = int(round(L ** 0.5))
    if h * h != L:
        raise ValueError(f"sequence of {L} positions is not a square feature map")
    P = pool_map(X.reshape(n, h, h, c), k)
    return P.reshape(n, -1, c)


STANDARDISED = -1  # Training.pca: every channel kept, centred and scaled to unit variance (no principal axes)


class Reduction:
    """The recipe's fixed input reduction, fitted on training features only: ``pool`` further pools the
    cached map, then the channels go onto ``k`` principal axes (``whiten``: each scaled to unit
    variance; otherwise one common scale), or, with ``k`` = :data:`STANDARDISED`, every channel is kept and
    standardised. No label and no validation or test image is used to fit it.
    Saved with a final model (:meth:`state`), so prediction applies exactly what training did."""

    def __init__(self, pool: int = 1, mean=None, comp=None, scale=None):
        self.pool, self.mean, self.comp, self.scale = int(pool), mean, comp, scale

    @classmethod
    def fit(cls, X_train, pool: int = 1, k: int = 0, whiten: bool = True) -> Reduction:
        X = repool(X_train, pool)
        if k == STANDARDISED:  # every channel centred and scaled to unit variance on the training part
            from sklearn.preprocessing import StandardScaler  # its rule: a constant channel keeps scale 1

            sc = StandardScaler().fit(X.reshape(-1, X.shape[-1]).astype(np.float64))
            return cls(pool, sc.mean_.astype(np.float32), None, sc.scale_.astype(np.float32))
        if k < 0:
            raise ValueError(f"training.pca must be {STANDARDISED} (standardised), 0 (raw) or a number of axes, not {k}")
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
            return X if self.mean is None else (X.astype(np.float32) - self.mean) / self.scale
        C, k = self.comp.shape
        return (((X.reshape(-1, C).astype(np.float32) - self.mean) @ self.comp) / self.scale).reshape(*X.shape[:-1], k)

    def state(self) -> dict:
        if self.mean is None:
            return dict(pool=np.int64(self.pool))
        return dict(pool=np.int64(self.pool), mean=self.mean, **({} if self.comp is None else dict(comp=self.comp)),
                    scale=self.scale)

    def sha256(self) -> str:
        """sha256 of :meth:`state` (:func:`weights_digest`): the per-stage digest of a split's reduction."""
        return weights_digest(self.state())

    @classmethod
    def from_state(cls, z) -> Reduction:
        if "mean" not in z:
            return cls(int(z["pool"]))
        return cls(int(z["pool"]), z["mean"], z["comp"] if "comp" in z else None, z["scale"])


def _nll(y, p2) -> float:
    """Early stopping's validation loss: the mean cross-entropy of (n, 2) softmax outputs, clipped at 1e-7
    as Keras' cross-entropy clips (the evaluation metrics are :func:`allrep.evaluate.metrics.nll`)."""
    p = np.clip(np.asarray(p2, dtype=np.float64)[np.arange(len(y)), np.asarray(y, dtype=int)], 1e-7, 1.0)
    return float(-np.log(p).mean())


def reset_optimizer(optimizer) -> None:
    """Zero the optimiser's state (step counter and moments), keeping its learning rate and its
    per-head settings: a fresh optimiser."""
    if optimizer.built:
        for v in optimizer.variables:
            if v.name not in ("learning_rate", "head_lr", "head_wd", "head_t0"):
                v.assign(np.zeros(v.shape, dtype=v.dtype))


ATTRS = dict(proj_kernel="wp", proj_bias="bp", gru_kernel="wx", gru_recurrent="wh", gru_bias="b",
             dense_kernel="w1", dense_bias="b1", probs_kernel="w2", probs_bias="b2")


class HeadsTrainer:
    """K slots of GRU heads of one architecture, stacked in one compiled Keras model (:mod:`allrep.train.stacked`);
    each slot holds one head with its own data, initialisation, data order, learning rate, weight decay,
    dropout stream and Adam step count, and a slot freed by early stopping takes the next head at once
    (:func:`run_pool`), so no slot trains a head that has already stopped.

    The model is traced once per shape and reused: every training batch has one shape and predictions are
    made in padded blocks of one shape. :meth:`load` gives a slot the initial weights its seed draws, its
    rates and a fresh optimiser state for that slot only (moments zeroed, step counted from now).
    """

    def __init__(self, seq_len: int, channels: int, arch: tuple, K: int, batch_size: int):
        from allrep.train import stacked

        self.shape, self.arch, self.K, self.batch_size = (int(seq_len), int(channels)), tuple(arch), int(K), int(batch_size)
        self.model, self.layer = stacked.build(self.K, self.shape[0], self.shape[1], *self.arch)
        self.names = [n for n in ATTRS if hasattr(self.layer, ATTRS[n])]
        opt = self.model.optimizer
        index = {id(v): i for i, v in enumerate(self.layer.trainable_variables)}
        # each head-stacked model variable with its Adam moments, so a slot's slice can be reset alone
        self._slots_of = {n: (getattr(self.layer, ATTRS[n]),
                              opt._momentums[opt._get_variable_index(getattr(self.layer, ATTRS[n]))],
                              opt._velocities[opt._get_variable_index(getattr(self.layer, ATTRS[n]))])
                          for n in self.names if id(getattr(self.layer, ATTRS[n])) in index}
        reset_optimizer(opt)
        self.rates = np.zeros(self.K, np.float32)
        self.mask_rngs = [None] * self.K

    def load(self, slots: dict) -> None:
        """Start a new head in each slot ``k`` of ``slots`` (k -> (hp, seed)); ``None`` empties a slot
        (learning rate 0, so it idles)."""
        from allrep.train.stacked import initial_weights

        if not slots:
            return
        p, u, d = self.arch
        opt = self.model.optimizer
        lr, wd, t0 = (np.array(v.numpy()) for v in (opt.head_lr, opt.head_wd, opt.head_t0))
        now = float(opt.iterations.numpy())
        init = {k: initial_weights(int(s[1]), self.shape[1], p, u, d) for k, s in slots.items() if s is not None}
        for n, (var, m, v) in self._slots_of.items():
            w, mm, vv = np.array(var.numpy()), np.array(m.numpy()), np.array(v.numpy())
            for k in slots:
                if k in init:
                    w[k] = init[k][n]
                mm[k], vv[k] = 0.0, 0.0
            var.assign(w), m.assign(mm), v.assign(vv)
        for k, s in slots.items():
            hp = s[0] if s is not None else None
            lr[k], wd[k], t0[k] = (hp.learning_rate, hp.weight_decay, now) if hp else (0.0, 0.0, now)
            self.rates[k] = hp.dropout if hp else 0.0
            self.mask_rngs[k] = np.random.default_rng([int(s[1]), 1]) if s is not None else None  # own dropout stream
        opt.head_lr.assign(lr), opt.head_wd.assign(wd), opt.head_t0.assign(t0)
        self.layer.rate.assign(self.rates)

    def get(self, k: int) -> dict:
        """Slot k's current weights (name -> array)."""
        return self.get_many([k])[k]

    def get_many(self, ks) -> dict:
        """Some slots' current weights (k -> name -> array), each stacked variable read once."""
        full = {n: getattr(self.layer, ATTRS[n]).numpy() for n in self.names}
        return {k: {n: np.array(full[n][k]) for n in self.names} for k in ks}

    def set(self, weights: dict) -> None:
        """Some slots' weights at once (k -> a :meth:`get` dict)."""
        for n in self.names:
            var = getattr(self.layer, ATTRS[n])
            w = np.array(var.numpy())
            for k, wk in weights.items():
                w[k] = wk[n]
            var.assign(w)

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The trainer's one input block (batch_size, K, T, C) and label block (batch_size, K), reused by every
        step and prediction: a fresh block of the larger recipes' size (hundreds of MB) per call costs more than
        the arithmetic. Callers fill every slot they use and zero the rest."""
        if not hasattr(self, "_x"):
            B, (T, C) = self.batch_size, self.shape
            self._x, self._y = np.zeros((B, self.K, T, C), np.float32), np.zeros((B, self.K), np.int64)
        return self._x, self._y

    def predict(self, Xs) -> list:
        """Slot k's (n_k, 2) probabilities on ``Xs[k]`` (``None``: an idle slot), in blocks of ``batch_size`` rows
        (a slot's rows past its end, and an idle slot's, are zeros; each block is filled in place)."""
        B = self.batch_size
        n = max([len(x) for x in Xs if x is not None] + [1])  # at least one block, as every slot gets a row
        out, ones = [], self._masks(np.ones)
        block, _ = self.buffers()
        for i in range(0, -(-n // B) * B, B):
            for k, x in enumerate(Xs):
                part = None if x is None else x[i:i + B]
                m = 0 if part is None else len(part)
                if m:
                    block[:m, k] = part
                block[m:, k] = 0.0
            out.append(np.asarray(self.model.predict_on_batch([block, *ones])))
        P = np.concatenate(out)  # (blocks * B, K, 2)
        return [P[:1 if x is None else len(x), k] for k, x in enumerate(Xs)]

    def step(self, x, y) -> None:
        """One optimiser step of every slot on its batch: x (B, K, T, C), y (B, K)."""
        self.model.train_on_batch([x, *self._masks()], y)

    def _masks(self, fill=None) -> list:
        """Dropout masks for one batch, (B, K, units) and (B, K, dense): slot k's drawn from its head's own
        generator with keep probability 1 - its rate (``fill``, or an idle slot: ones)."""
        B, (_, u, d) = self.batch_size, self.arch
        if fill is not None:
            return [fill((B, self.K, u), np.float32), fill((B, self.K, d), np.float32)]
        mu, md = np.ones((B, self.K, u), np.float32), np.ones((B, self.K, d), np.float32)
        for k, (g, r) in enumerate(zip(self.mask_rngs, self.rates)):
            if g is not None:
                mu[:, k] = g.random((B, u)) >= r
                md[:, k] = g.random((B, d)) >= r
        return [mu, md]


@lru_cache(maxsize=2)
def heads_trainer(seq_len: int, channels: int, arch: tuple, K: int, batch_size: int) -> HeadsTrainer:
    """The last :class:`HeadsTrainer` built for these shapes, reused while they stay the same."""
    return HeadsTrainer(seq_len, channels, arch, K, batch_size)


class _Head:
    """One head in a slot: its data, its epoch order, its early stopping."""

    def __init__(self, tid, task: dict, epochs: int, patience: int, min_delta: float, batch_size: int):
        self.tid, self.task = tid, task
        self.epochs = int(task.get("epochs", epochs))
        self.patience = int(task.get("patience", patience))
        self.min_delta = float(task.get("min_delta", min_delta))
        self.X, self.y = task["X_train"], np.asarray(task["y_train"])
        self.B = batch_size
        self.steps = -(-len(self.X) // batch_size)  # its own epoch: its last batch filled from its permutation
        self.rng = np.random.default_rng(int(task["seed"]))  # data order
        self.epoch, self.i = 0, 0
        self.order = None
        self.best, self.best_epoch, self.wait, self.best_w = np.inf, 0, 0, None
        self.hist = dict(val_loss=[])
        self.t0 = time.perf_counter()
        self._new_epoch()

    def _new_epoch(self):
        self.order = np.resize(self.rng.permutation(len(self.X)), self.steps * self.B)
        self.i = 0

    def batch(self):
        idx = self.order[self.i * self.B:(self.i + 1) * self.B]
        return self.X[idx], self.y[idx]

    def advance(self) -> bool:
        """After a step: True when this head's epoch ended (its validation loss is due)."""
        self.i += 1
        if self.i < self.steps:
            return False
        self.epoch += 1
        self._new_epoch()
        return True

    def scored(self, loss: float, weights) -> bool:
        """Record the epoch's validation loss; True when training has ended (patience or the epoch cap)."""
        self.hist["val_loss"].append(loss)
        if loss < self.best - self.min_delta:  # an improvement of min_delta or less does not count
            self.best, self.best_epoch, self.wait = loss, self.epoch, 0
            self.best_w = weights()
        else:
            self.wait += 1
        return self.wait >= self.patience or self.epoch >= self.epochs


class Tasks:
    """The simplest source of heads for :func:`run_pool`: a list, in order; results kept by index."""

    def __init__(self, tasks):
        self.tasks, self.results, self._next = list(tasks), [None] * len(tasks), 0

    def __len__(self):
        return len(self.tasks)

    def next(self):
        if self._next >= len(self.tasks):
            return None
        i = self._next
        self._next += 1
        return i, self.tasks[i]

    def done(self, tid, result) -> None:
        self.results[tid] = result


SLOTS = 16  # heads per stacked model, fixed: see run_pool


def run_pool(source, epochs: int, patience: int, batch_size: int, min_delta: float = 0.0,
             keep_weights: bool = False, slots: int = SLOTS, reuse: bool = True) -> None:
    """Train every head ``source`` hands out, ``slots`` at a time in one stacked model.

    ``source.next()`` returns ``(tid, task)`` or ``None`` (nothing ready now); ``source.done(tid, result)``
    receives each head's result as soon as it ends, so a caller can cache it (a kill loses only heads in
    flight) and a tuning search can propose its next trial. A task is a dict: ``X_train, y_train, X_val,
    y_val`` (arrays already reduced), ``X_test`` (optional), ``hp`` (:class:`Head`; every task of a pool
    shares its architecture and feature shape), ``seed``, and optionally its own ``epochs``, ``patience``
    and ``min_delta``. Each head has its own initialisation and data order (``default_rng(seed)`` permutes
    its training set every epoch of ``ceil(n / batch_size)`` steps) and its own early stopping: its
    validation NLL after every epoch, its best weights kept, and it stops after ``patience`` epochs without
    an improvement larger than ``min_delta`` or at ``epochs``.

    The number of slots is fixed (:data:`SLOTS`), however many heads there are: the compiled step of a
    stack of K heads computes each head bit for bit alike whatever slot it has and whoever its
    neighbours are, but another K fuses the arithmetic differently (round-off of about 1e-7). With K
    fixed, a head's result does not depend on how the heads were grouped (one process or units on a
    cluster give the same files; tests/test_stacked.py). Idle slots cost their share of each step.
    """
    K = int(slots)
    heads, tr, arch = [None] * K, None, None
    while True:
        new = {}
        for k in range(K):
            if heads[k] is None:
                nxt = source.next()
                if nxt is None:
                    break
                tid, task = nxt
                hp = task["hp"]
                a = (hp.projection, hp.gru_units, hp.dense_units)
                if tr is None:
                    arch = a
                    X0 = task["X_train"]
                    args = (X0.shape[1], X0.shape[2], arch, K, batch_size)
                    tr = heads_trainer(*args) if reuse else HeadsTrainer(*args)
                    tr.load({j: None for j in range(K)})
                elif a != arch or task["X_train"].shape[1:] != tr.shape:
                    raise ValueError(f"heads trained together share one architecture and feature shape: {a} "
                                     f"{task['X_train'].shape[1:]} vs {arch} {tr.shape}")
                heads[k] = _Head(tid, task, epochs, patience, min_delta, batch_size)
                new[k] = (hp, task["seed"])
        if tr is None or all(h is None for h in heads):
            return
        tr.load(new)
        x, y = tr.buffers()
        for k, h in enumerate(heads):
            if h is not None:
                x[:, k], y[:, k] = h.batch()
            else:
                x[:, k], y[:, k] = 0.0, 0
        tr.step(x, y)
        ended = [k for k, h in enumerate(heads) if h is not None and h.advance()]
        if not ended:
            continue
        pv = tr.predict([h.task["X_val"] if h is not None and k in ended else None for k, h in enumerate(heads)])
        now = {}  # the ended slots' weights, read once (each stacked variable once) when a head first needs them

        def weights(k):
            if not now:
                now.update(tr.get_many(ended))
            return now[k]
        finished = [k for k in ended if heads[k].scored(_nll(heads[k].task["y_val"], pv[k]), lambda k=k: weights(k))]
        if not finished:
            continue
        live = {k: weights(k) for k in finished}  # the slots go on to new heads; put each best state in to predict
        tr.set({k: heads[k].best_w or live[k] for k in finished})
        pv = tr.predict([heads[k].task["X_val"] if k in finished else None for k in range(K)])
        pt = tr.predict([heads[k].task.get("X_test") if k in finished else None for k in range(K)])
        for k in finished:
            h = heads[k]
            has_test = h.task.get("X_test") is not None
            res = dict(p_test=pt[k][:, 1].astype(np.float64) if has_test else None,
                       p_val=pv[k][:, 1].astype(np.float64), history=h.hist, best_epoch=h.best_epoch,
                       best_val_loss=float(h.best), epochs_run=h.epoch, train_seconds=(time.perf_counter() - h.t0) / K,
                       n_train=int(len(h.X)), weights_sha256=weights_digest(h.best_w or live[k]),
                       **({"weights": h.best_w or live[k]} if keep_weights else {}))
            heads[k] = None
            source.done(h.tid, res)
        tr.load({k: None for k in finished if heads[k] is None})


def weights_digest(weights: dict) -> str:
    """sha256 of a head's weights (name -> array; names sorted, each array's dtype, shape and bytes): what the
    per-stage digests (:mod:`allrep.record.digests`) compare across machines."""
    import hashlib

    h = hashlib.sha256()
    for n in sorted(weights):
        a = np.ascontiguousarray(weights[n])
        h.update(f"{n}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def ended_by(epochs_run: int, best_epoch: int, patience: int) -> str:
    """What ended a member's training (:func:`run_pool`): "early stopping" (``patience`` epochs
    without a better validation loss) or "epoch cap" (the last epoch came while patience had not run out)."""
    return "early stopping" if epochs_run == best_epoch + patience else "epoch cap"


def epochs_summary(members):
    """Per protocol: how many members, the median and largest number of epochs they ran, and the median epoch whose
    weights they kept (the best on validation)."""
    g = members.groupby("protocol", sort=True)
    return g.agg(members=("epochs_run", "size"), median_epochs=("epochs_run", "median"),
                 max_epochs=("epochs_run", "max"), median_best_epoch=("best_epoch", "median")).reset_index()


def convergence(members):
    """Per ensemble (backbone, dataset, protocol): members ended by early stopping and by the epoch cap."""
    t = members.groupby(["backbone", "dataset", "protocol", "ended_by"]).size().unstack("ended_by", fill_value=0)
    for col in ("early stopping", "epoch cap"):
        if col not in t:
            t[col] = 0
    return t[["early stopping", "epoch cap"]].reset_index()
