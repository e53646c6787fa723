"""Fine-tune ensemble members on a GPU under any Keras 3 backend (JAX on a GPU machine without TensorFlow).

    KERAS_BACKEND=jax ALLREP_DATA=/path/ALL-IDB ALLREP_WEIGHTS_DIR=/path/weights \
        python scripts/gpu_members.py --profile paper --dataset IDB2 --members 1 --out $OUT

For each backbone: one model is built and compiled once; every member restores
the starting weights, re-initialises its head from its own seed and trains
(XLA compiles a new model for 25-190 s, so members never rebuild). Splits,
seeds, weights and head settings come from the profile, exactly as on the CPU;
the output (probabilities, times, hardware) goes to ``--out/gpu_members.json``.
Only ``keras`` is used in the model and training code, so the same script runs
under TensorFlow on a CPU (the tests run it at a tiny input size).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def predict(model, X, batch_size: int = 64) -> np.ndarray:
    """p(ALL) for each row of X."""
    p = np.asarray(model.predict(X, batch_size=batch_size, verbose=0))
    return p[:, 1].astype(np.float64)


class FineTuner:
    """Fine-tune whole hybrids, reusing one compiled model across ensemble members.

    XLA compiles a new model for 25-190 s on the GPU, so members do not rebuild:
    each member restores the backbone's starting weights, re-initialises the head
    from its own seed, resets the optimiser state, and trains. ``unfreeze`` is the
    number of backbone layers (from the top) that train; -1 trains all of them.
    """

    def __init__(self, w, hp, ts, unfreeze: int = -1):
        import keras

        from allrep.train.backbones import build_hybrid, compile_model

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
        from allrep.train.backbones import build_head
        from allrep.train.heads import copy_state, reset_optimizer

        keras = self._keras
        for v, x in zip(self.model.weights, self.start):
            v.assign(x)
        keras.utils.set_random_seed(int(seed))
        copy_state(self.head, build_head(self.head.input_shape[1], self.head.input_shape[2], self.hp))
        reset_optimizer(self.model.optimizer)

    def member(self, X_train, y_train, X_val, y_val, X_test, seed: int) -> dict:
        """X_*: preprocessed float images (n, s, s, 3)."""
        from allrep.train.heads import Shuffled

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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--dataset", default="IDB2")
    ap.add_argument("--backbones", nargs="*", default=None)
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="default: the profile's training.epochs")
    ap.add_argument("--unfreeze", type=int, default=-1, help="backbone layers that train, from the top (-1: all)")
    ap.add_argument("--input-size", type=int, default=None, help="override the weights' input size (tests)")
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--scratch", default=None, metavar="RECIPE",
                    help="train every backbone end to end from random weights with the profile's scratch recipe "
                         "RECIPE (e.g. ours) at its native input size, instead of fine-tuning")
    ap.add_argument("--out", default=os.environ.get("OUT", "scratch/gpu"))
    a = ap.parse_args(argv)

    from allrep import repro
    from allrep.profile import load_profile

    cfg = load_profile(a.profile)
    if a.scratch and a.scratch not in cfg.scratch.recipes:
        ap.error(f"unknown recipe {a.scratch!r}: profile {cfg.name} has {', '.join(cfg.scratch.recipes)}")
    repro.setup(cfg.seed)
    repro.quiet_backend()
    env = repro.environment()  # the backend started: the accelerator it sees is recorded
    from dataclasses import replace

    import numpy as np

    from allrep.data.dataset import load_images, manifest
    from allrep.data.splits import make_splits
    from allrep.evaluate.metrics import binary_metrics
    from allrep.profile import Head, load_section
    from allrep.repro import seed_for
    from allrep.train.backbones import preprocess, weights_for
    from allrep.train.features import view

    s = cfg.splits
    split = make_splits(a.dataset, "paper", cfg.seed, s.test_fraction, s.val_fraction)
    items = {it.id: it for it in manifest(a.dataset)}
    ts = replace(cfg.training, epochs=a.epochs) if a.epochs else cfg.training
    views = cfg.features.views
    out = dict(environment=env, dataset=a.dataset, profile=cfg.name, backbones={})
    for bb in a.backbones or cfg.use_backbones:
        w = weights_for(cfg, bb)
        if a.scratch:
            from allrep.train.backbones import resolve_weights

            w = resolve_weights(bb, "none", seed=seed_for(cfg.seed, "gpu-scratch", bb))
        if a.input_size:
            w = replace(w, input_size=a.input_size)
        best = Path("results") / "tuning" / f"best_{bb}_{a.dataset}.json" if cfg.name == "paper" else None
        if best is not None and best.is_file():  # the committed paper run's tuned head
            hp = load_section(Head, json.loads(best.read_text())["hyperparameters"], best.name)
            hp_source = "tuned (paper run)"
        else:
            hp, hp_source = cfg.head, "profile default"
        hp = replace(hp, learning_rate=a.learning_rate)  # fine-tuning a pretrained backbone wants a small step
        if a.scratch:
            hp, hp_source = cfg.head, "profile default (from scratch)"
            recipe = cfg.scratch.recipes[a.scratch]
            if a.epochs:
                recipe = replace(recipe, epochs=a.epochs)
        t0 = time.perf_counter()
        data = {}
        for role in ("train", "val", "test"):
            part = split[split["role"] == role]
            imgs = load_images([items[i] for i in part["id"]], w.input_size)
            if a.scratch:  # uint8 images; the recipe augments online
                data[role] = (imgs, part["label"].to_numpy(), list(part["id"]))
                continue
            v = views if role == "train" else 1
            x = np.stack([view(im, k, items[i].sha256) for im, i in zip(imgs, part["id"]) for k in range(v)])
            data[role] = (preprocess(x, w.preprocess), np.repeat(part["label"].to_numpy(), v), list(part["id"]))
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        if a.scratch:  # the previous backbone's compiled model and optimiser state leave the accelerator
            from allrep.train.scratch import scratch_trainer

            scratch_trainer.cache_clear()
        tuner = None if a.scratch else FineTuner(w, hp, ts, unfreeze=a.unfreeze)
        t_build = time.perf_counter() - t0
        members = []
        for m in range(a.members):
            seed = seed_for(cfg.seed, "gpu-member", a.dataset, "paper", 0, bb, m)
            if a.scratch:  # a fresh model per member: random weights from the member's own seed
                from allrep.train.scratch import train_member

                r = train_member(replace(w, seed=seed), hp, recipe, *data["train"][:2], *data["val"][:2],
                                 data["test"][0], seed)
            else:
                r = tuner.member(*data["train"][:2], *data["val"][:2], data["test"][0], seed)
            met = binary_metrics(data["test"][1], r["p_test"])
            members.append(dict(member=m, seed=seed, n_correct=met["n_correct"], n=met["n"], epochs_run=r["epochs_run"],
                                train_seconds=round(r["train_seconds"], 1),
                                images_per_second=round(r["epochs_run"] * len(data["train"][0]) / r["train_seconds"], 1),
                                p_test=[round(float(p), 6) for p in r["p_test"]]))
            print(f"{bb} member {m}: {met['n_correct']}/{met['n']} correct, {r['epochs_run']} epochs, "
                  f"{r['train_seconds']:.0f}s", flush=True)
        out["backbones"][bb] = dict(weights=w.to_dict(), hp=hp.to_dict(), hp_source=hp_source, load_seconds=t_load,
                                    mode=f"from scratch ({a.scratch})" if a.scratch else "fine-tune",
                                    build_seconds=t_build, test_ids=data["test"][2], members=members)
    dest = Path(a.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "gpu_members.json").write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
