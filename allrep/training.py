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


def pca_reduce(X_train, *others, k: int = 0):
    """Fit a PCA of the channels on the training features only; apply it to every array.

    A fixed, unsupervised projection before the learned one: no label and no validation
    or test image is used to fit it; components are scaled to unit variance. Returns
    float32 arrays (unchanged when ``k`` is 0 or not smaller than the channel count)."""
    if not k or k >= X_train.shape[-1]:
        return (X_train, *others)
    from sklearn.utils.extmath import randomized_svd

    C = X_train.shape[-1]
    flat = X_train.reshape(-1, C)
    mean = flat.mean(0, dtype=np.float64).astype(np.float32)
    rng = np.random.default_rng(0)
    rows = (flat[rng.choice(len(flat), size=min(len(flat), 8000), replace=False)] - mean).astype(np.float32)
    _, _, vt = randomized_svd(rows, n_components=k, n_iter=4, random_state=0)
    comp = np.ascontiguousarray(vt.T, dtype=np.float32)
    scale = ((rows @ comp).std(0) + 1e-6).astype(np.float32)

    def f(X):
        return (((X.reshape(-1, C).astype(np.float32) - mean) @ comp) / scale).reshape(*X.shape[:-1], k)

    return tuple(f(X) for X in (X_train, *others))


def _nll(y, p2) -> float:
    p = np.clip(np.asarray(p2, dtype=np.float64)[np.arange(len(y)), np.asarray(y, dtype=int)], 1e-7, 1.0)
    return float(-np.log(p).mean())


def _reset_optimizer(optimizer) -> None:
    """Zero the optimiser's state (step counter and moments), keeping its learning rate: a fresh optimiser."""
    if optimizer.built:
        for v in optimizer.variables:
            if v.name != "learning_rate":
                v.assign(np.zeros(v.shape, dtype=v.dtype))


class EnsembleTrainer:
    """M independent GRU heads in one compiled Keras model, reused across splits.

    Head m reads input m and shares no weight with the others (the summed loss has
    independent gradients). On a CPU the cost of a small head is mostly graph tracing
    (about 6 s for five heads), not arithmetic, so the model is traced once and reused:
    :meth:`reset` gives every head the exact initial weights a freshly built head would
    get from its seed, and a fresh optimiser; every training batch has the same shape
    (the epoch's permutation is cycled to fill the last batch) and predictions are made in
    padded blocks of one shape, so nothing is traced again. A reused trainer gives the
    same probabilities as a new one (tests/test_training.py).
    """

    def __init__(self, seq_len: int, channels: int, hp: HeadParams, M: int, batch_size: int):
        import keras

        self.shape, self.hp, self.M, self.batch_size = (int(seq_len), int(channels)), hp, int(M), int(batch_size)
        inputs, outputs = [], []
        for m in range(self.M):
            head = build_head(seq_len, channels, hp, name=f"member_{m}")
            x = keras.Input((seq_len, channels), name=f"features_{m}")
            inputs.append(x)
            outputs.append(head(x))
        self.model = keras.Model(inputs, outputs, name="ensemble")
        self.model.compile(optimizer=keras.optimizers.AdamW(hp.learning_rate, weight_decay=hp.weight_decay),
                           loss=["sparse_categorical_crossentropy"] * self.M)
        self.heads = [self.model.get_layer(f"member_{m}") for m in range(self.M)]

    def fits(self, seq_len: int, channels: int, hp: HeadParams, M: int, batch_size: int) -> bool:
        return (self.shape, self.hp, self.M, self.batch_size) == ((seq_len, channels), hp, M, batch_size)

    def reset(self, seeds) -> None:
        """Head m gets the initial state ``build_head`` draws after ``set_random_seed(seeds[m])``:
        its weights and its dropout seed-generator states (variables that are not weights)."""
        import keras

        for head, s in zip(self.heads, seeds):
            keras.utils.set_random_seed(int(s))
            copy_state(head, build_head(*self.shape, self.hp))
        _reset_optimizer(self.model.optimizer)

    def predict(self, X) -> list:
        """Each head's (n, 2) probabilities, computed in padded blocks of ``batch_size`` rows."""
        return predict_padded(self.model, X, self.batch_size, copies=self.M)

    def epoch(self, X, y, perms) -> None:
        """One epoch: member m sees the training set in the order ``perms[m]``, cycled to whole batches."""
        B = self.batch_size
        steps = -(-len(X) // B)
        idx = [np.resize(p, steps * B) for p in perms]
        for i in range(steps):
            b = [p[i * B:(i + 1) * B] for p in idx]
            self.model.train_on_batch([X[j] for j in b], [y[j] for j in b])


@lru_cache(maxsize=1)
def ensemble_trainer(seq_len: int, channels: int, hp: HeadParams, M: int, batch_size: int) -> EnsembleTrainer:
    """The last :class:`EnsembleTrainer` built, reused while shapes and head stay the same (one held)."""
    return EnsembleTrainer(seq_len, channels, hp, M, batch_size)


def train_ensemble(X_train, y_train, X_val, y_val, X_test, hp: HeadParams, ts: TrainSettings, seeds,
                   reuse: bool = True, min_delta: float = 0.0) -> list[dict]:
    """Train M members together (one model, M heads), each as if alone.

    Member m has its own initialisation and its own data order (``default_rng(seeds[m])``
    permutes the training set every epoch), and its own early stopping: its validation loss
    is tracked every epoch, its best weights kept, and it stops counting after ``patience``
    epochs without an improvement larger than ``min_delta``; training ends when every member has
    stopped. Sharing one model, reused across splits (``reuse``), saves the tracing and per-step
    overhead that dominate small heads on a CPU.
    """
    t0 = time.perf_counter()
    X_train, X_val, X_test = pca_reduce(X_train, X_val, X_test, k=ts.pca)
    seeds = [int(s) for s in seeds]
    M = len(seeds)
    args = (X_train.shape[1], X_train.shape[2], hp, M, ts.batch_size)
    tr = ensemble_trainer(*args) if reuse else EnsembleTrainer(*args)
    tr.reset(seeds)
    rngs = [np.random.default_rng(s) for s in seeds]
    best = [np.inf] * M
    best_w = [h.get_weights() for h in tr.heads]
    best_epoch, stopped_at, wait = [0] * M, [None] * M, [0] * M
    hist = [dict(val_loss=[]) for _ in range(M)]
    for epoch in range(1, ts.epochs + 1):
        tr.epoch(X_train, y_train, [r.permutation(len(X_train)) for r in rngs])
        pv = tr.predict(X_val)
        for m in range(M):
            if stopped_at[m] is not None:
                continue
            loss = _nll(y_val, pv[m])
            hist[m]["val_loss"].append(loss)
            if loss < best[m] - min_delta:  # an improvement of min_delta or less does not count
                best[m], best_epoch[m], wait[m] = loss, epoch, 0
                best_w[m] = tr.heads[m].get_weights()
            else:
                wait[m] += 1
                if wait[m] >= ts.patience:
                    stopped_at[m] = epoch
        if all(s is not None for s in stopped_at):
            break
    for h, w in zip(tr.heads, best_w):
        h.set_weights(w)
    t1 = time.perf_counter()
    pt, pv = tr.predict(X_test), tr.predict(X_val)
    return [dict(p_test=pt[m][:, 1].astype(np.float64), p_val=pv[m][:, 1].astype(np.float64),
                 history=hist[m], best_epoch=best_epoch[m], epochs_run=stopped_at[m] or epoch,
                 train_seconds=(t1 - t0) / M, trained_with=M, n_train=int(len(X_train)))
            for m in range(M)]


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
