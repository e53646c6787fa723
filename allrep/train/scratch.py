"""Training a hybrid end to end from random initialisation ("from scratch").

No EfficientNetB3 ImageNet file exists offline, so here that backbone starts from
random weights. Frozen random features carry little, and a naive end-to-end run
(Adam 1e-3 at a constant rate, BatchNorm momentum 0.99, no augmentation) is
reported to stay at chance on ALL-IDB2. A :class:`Recipe` names every choice of an
end-to-end run, so the naive run and ours are two entries of the profile's
``scratch.recipes`` and train through the same code:

* online augmentation: every epoch each training image is shown as a random one
  of its 8 exact dihedral views, with mild colour and brightness jitter
  (seeded per member and epoch);
* AdamW with a linear warm-up and a cosine decay of the learning rate;
* label smoothing;
* BatchNorm momentum 0.9 instead of 0.99: with ~170 training images an epoch is
  ~10 steps, and moving statistics with a 100-step time constant lag far behind
  the weights, so the network evaluated in inference mode is not the one trained;
* early stopping on the validation part of the training split, best epoch restored.

Only ``keras`` is used, so a GPU machine with JAX and no TensorFlow runs the same code.
"""
from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from allrep.profile import Recipe


def jitter_view(img: np.ndarray, rng: np.random.Generator, colour: bool) -> np.ndarray:
    """A random dihedral view of a square uint8 image, with mild colour/brightness jitter if ``colour``."""
    d = int(rng.integers(8))
    out = np.rot90(img, k=d % 4, axes=(0, 1))
    if d >= 4:
        out = out[:, ::-1]
    if colour:
        gain = rng.uniform(0.9, 1.1, size=3)
        bright = rng.uniform(-12, 12)
        out = np.clip(out.astype(np.float32) * gain + bright, 0, 255)
    return np.ascontiguousarray(out, dtype=np.uint8)


def learning_rate(r: Recipe, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch``: a linear warm-up from 10% of the peak over
    ``warmup_epochs``, then the peak (``constant``) or a cosine decay that reaches 0 after the
    last epoch. Set once per epoch, so the compiled model does not depend on the split's size."""
    import math

    if epoch < r.warmup_epochs:
        return r.learning_rate * (0.1 + 0.9 * epoch / r.warmup_epochs)
    if r.schedule == "constant":
        return r.learning_rate
    t = (epoch - r.warmup_epochs) / max(1, r.epochs - r.warmup_epochs)
    return r.learning_rate * 0.5 * (1 + math.cos(math.pi * t))


def build(w, hp, r: Recipe):
    """The whole hybrid, every layer trainable, BatchNorm momentum from the recipe, compiled."""
    import keras

    from allrep.train.backbones import build_hybrid

    model = build_hybrid(w, hp, trainable_backbone=True)
    for layer in model.layers[1].layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = r.bn_momentum
    opt = keras.optimizers.AdamW(r.learning_rate, weight_decay=r.weight_decay) \
        if r.weight_decay else keras.optimizers.Adam(r.learning_rate)
    model.compile(optimizer=opt, loss=keras.losses.CategoricalCrossentropy(label_smoothing=r.label_smoothing),
                  metrics=["accuracy"])
    return model


class ScratchTrainer:
    """One compiled hybrid per recipe, reused across members (XLA compiles a new EfficientNetB3
    for minutes on the GPU; TensorFlow traces it for tens of seconds on a CPU).

    :meth:`member` gives the model the complete initial state a model built from the member's
    seed would have (random backbone and head weights, BatchNorm statistics, dropout streams),
    a fresh optimiser (step 0 of the learning-rate schedule), and trains it."""

    def __init__(self, w, hp, r: Recipe):
        self.w, self.hp, self.r = w, hp, r
        self.model = build(w, hp, r)

    def fits(self, w, hp, r: Recipe) -> bool:
        from dataclasses import replace

        return (replace(self.w, seed=None), self.hp, self.r) == (replace(w, seed=None), hp, r)

    def reset(self, seed: int) -> None:
        from dataclasses import replace

        import keras

        from allrep.train.backbones import build_hybrid
        from allrep.train.heads import copy_state, reset_optimizer

        keras.utils.set_random_seed(int(seed))
        copy_state(self.model, build_hybrid(replace(self.w, seed=int(seed)), self.hp, trainable_backbone=True))
        reset_optimizer(self.model.optimizer)
        keras.utils.set_random_seed(int(seed))

    def member(self, X_train, y_train, X_val, y_val, X_test, seed: int) -> dict:
        """``X_*``: square uint8 images at the input size; validation and test images are seen as they are."""
        import keras

        from allrep.train.backbones import preprocess
        from allrep.train.heads import Shuffled, predict_padded

        t0 = time.perf_counter()
        self.reset(seed)
        r, w = self.r, self.w
        eye = np.eye(2, dtype=np.float32)

        def transform(x, rng):  # online augmentation (drawn per image and epoch), then preprocessing
            if r.augment:
                x = np.stack([jitter_view(im, rng, colour=True) for im in x])
            return preprocess(x, w.preprocess)

        data = Shuffled(X_train, eye[np.asarray(y_train, dtype=int)], r.batch_size, seed, transform)
        Xv, Xt = preprocess(X_val, w.preprocess), preprocess(X_test, w.preprocess)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=r.patience, restore_best_weights=True)
        lr = keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate(r, epoch))
        hist = self.model.fit(data, validation_data=(Xv, eye[np.asarray(y_val, dtype=int)]), epochs=r.epochs,
                              callbacks=[lr, stop], verbose=0)
        h = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        t1 = time.perf_counter()
        p_test, p_val = (predict_padded(self.model, X, 64)[0][:, 1].astype(np.float64) for X in (Xt, Xv))
        return dict(p_test=p_test, p_val=p_val, history=h, best_epoch=int(np.argmin(h["val_loss"])) + 1,
                    epochs_run=len(h["loss"]), train_seconds=t1 - t0, n_train=int(len(X_train)),
                    final_train_accuracy=h["accuracy"][-1])


TRAINERS = 4  # compiled trainers kept: step 35 alternates its recipes within each split


@lru_cache(maxsize=TRAINERS)
def scratch_trainer(w, hp, r: Recipe) -> ScratchTrainer:
    """A :class:`ScratchTrainer` per (backbone, input, head, recipe) (``w`` without its seed), the last
    :data:`TRAINERS` kept: with one, every member of two alternating recipes traced its model again
    (about 20 of the 27 s a smoke member took)."""
    return ScratchTrainer(w, hp, r)


def train_member(w, hp, r: Recipe, X_train, y_train, X_val, y_val, X_test, seed: int) -> dict:
    """One member from random initialisation (weights drawn from ``seed``), on the cached
    :class:`ScratchTrainer` of its recipe, backbone, input and head (:func:`scratch_trainer`)."""
    from dataclasses import replace

    return scratch_trainer(replace(w, seed=None), hp, r).member(X_train, y_train, X_val, y_val, X_test, seed)
