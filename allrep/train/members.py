"""The member engine: the one owner of cached head training.

Every head the pipeline trains (an ensemble member, a plain reference head, a recipe-study head, a
final model's member, a tuning trial) is a :class:`Plan`: which backbone's features, which images in
which role (train / val / test), the head's settings, the whole ``Training`` section and a seed. The
engine turns plans into cached results:

* :func:`key` is a plan's cache key: exactly what the result depends on (the weights' identity and input
  size, the feature settings and arithmetic (:data:`allrep.train.features.ALGO`), the plan's rows, head, training
  and seed, and :data:`ALGO`, the version of the training arithmetic), built by :func:`cache_key`, the one key builder of trained models (step 35's
  whole networks use it too);
* :func:`fetch` returns each plan's result, training the missing ones first (:func:`train`);
* :func:`train` loads each split's features once, fits its channel reduction on its training part
  (:class:`allrep.train.heads.Reduction`), and trains every missing head in pools of stacked heads
  (:func:`allrep.train.heads.run_pool`), one pool per feature shape and head architecture; each head is
  written to the cache (atomically, one file pair per head) the moment it ends, so a killed run loses
  only the heads in flight and a rerun resumes.

Which plans share a pool changes a head's result in its last decimals, not its decisions: XLA fuses a pool's
training step, and its rounding depends on the pool's company. So a serial run and a run on a Dask cluster
(:mod:`allrep.runner.dispatch`), which pool plans differently, agree to about the fifth decimal of a
probability, with the same splits, tuning choices and epochs (tested against a 2-worker run).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from allrep.cache import folder
from allrep.io import atomic_save_npz, atomic_write_json
from allrep.profile import Head, Profile, Training
from allrep.progress import head_done
from allrep.repro import digest, seed_for
from allrep.train.features import ALGO as FEATURES_ALGO

ALGO = "engine-2-slots16"  # per-head epochs, a pool of 16 slots compiled with XLA (allrep.train.heads.run_pool); 2: the
# engine's heads no longer equal those of the registered run for the same plan (measured), so none is reused for one


@dataclass(frozen=True)
class Plan:
    """One head to train: ``rows`` are ``(id, role, label)`` of its split (roles train, val, and test
    when test predictions are wanted)."""

    backbone: str
    rows: tuple
    head: Head
    training: Training
    seed: int
    keep_weights: bool = False  # also cache the best-epoch weights (final models)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=["id", "role", "label"])

    def ids(self, role: str) -> list[str]:
        return [i for i, r, _ in self.rows if r == role]


def ensemble_seed(cfg: Profile, dataset: str, protocol: str, r: int, backbone: str, m: int, replicate: int = 0) -> int:
    """Ensemble member ``m``'s seed (initialisation and data order) on split (protocol, r); ``replicate`` k > 0:
    the k-th training-seed replicate's (the robustness analysis), a seed no registered member has."""
    return seed_for(cfg.seed, "member", dataset, protocol, r, backbone, m, *([f"replicate-{replicate}"] if replicate else []))


def plain_seed(cfg: Profile, dataset: str, protocol: str, r: int, backbone: str, m: int) -> int:
    """Plain reference head ``m``'s seed; member 0 keeps the seed of the one-member reference."""
    return seed_for(cfg.seed, "plain", dataset, protocol, r, backbone, *([m] if m else []))


def plan(backbone: str, split: pd.DataFrame, head: Head, training: Training, seed: int, test: bool = True,
         keep_weights: bool = False) -> Plan:
    """A :class:`Plan` on a split frame (columns id, role, label); ``test=False`` drops its test rows
    (a tuning trial never sees them)."""
    part = split if test else split[split["role"] != "test"]
    rows = tuple((str(i), str(r), int(y)) for i, r, y in part[["id", "role", "label"]].itertuples(index=False))
    return Plan(backbone, rows, head, training, int(seed), keep_weights)


_WEIGHTS: dict = {}


def _weights(cfg: Profile, backbone: str):
    """:func:`allrep.train.backbones.weights_for`, once per profile settings, backbone and weights folder."""
    import os

    from allrep.train.backbones import weights_for

    k = (cfg.digest("seed", "backbones", "weights_dir"), backbone, os.environ.get("ALLREP_WEIGHTS_DIR"))
    if k not in _WEIGHTS:
        _WEIGHTS[k] = weights_for(cfg, backbone)
    return _WEIGHTS[k]


def cache_key(algo: str, **depends_on) -> str:
    """The one cache key builder of trained models: a digest of the algorithm's version and everything its
    result depends on (heads here; whole networks from scratch in step 35)."""
    return digest(dict(algo=algo, **depends_on))


def key(cfg: Profile, p: Plan) -> str:
    """The cache key of a plan's result."""
    w = _weights(cfg, p.backbone)
    return cache_key(ALGO, weights=w.key, size=w.input_size, features=dict(asdict(cfg.features), algo=FEATURES_ALGO), rows=p.rows,
                     head=p.head.to_dict(), training=asdict(p.training), seed=p.seed, keep_weights=p.keep_weights)


class MemberStore:
    """Heads cached one file pair each (``<key>.npz`` + ``<key>.json``), written atomically."""

    def __init__(self, folder: Path | str):
        self.dir = Path(folder)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.npz", self.dir / f"{key}.json"

    def has(self, key: str) -> bool:
        a, b = self.paths(key)
        return a.is_file() and b.is_file()

    def save(self, key: str, result: dict, meta: dict) -> None:
        a, b = self.paths(key)
        arrays = dict(p_val=result["p_val"])
        if result.get("p_test") is not None:
            arrays["p_test"] = result["p_test"]
        arrays.update({f"w_{n}": v for n, v in (result.get("weights") or {}).items()})
        atomic_save_npz(a, **arrays)
        info = {k: v for k, v in result.items() if k not in ("p_test", "p_val", "weights")}
        atomic_write_json(b, {**meta, **info})  # json last: its presence marks the head complete

    def load(self, key: str) -> dict:
        a, b = self.paths(key)
        with np.load(a) as z:
            out = dict(p_val=z["p_val"], p_test=z["p_test"] if "p_test" in z else None)
            w = {n[2:]: z[n] for n in z.files if n.startswith("w_")}
        if w:
            out["weights"] = w
        out.update(json.loads(b.read_text()))
        return out


def store(p: Plan) -> MemberStore:
    return MemberStore(folder("members", p.backbone))


def save(cfg: Profile, p: Plan, res: dict, reduction_sha256: str | None = None) -> None:
    """Cache one trained head under its plan's key (and count it on the progress bar); ``reduction_sha256``:
    the digest of the channel reduction its inputs went through (:meth:`Arrays.reduction_sha256`)."""
    store(p).save(key(cfg, p), res, dict(seed=p.seed, n_val=len(p.ids("val")),
                                         **({"reduction_sha256": reduction_sha256} if reduction_sha256 else {})))
    head_done()


def has(cfg: Profile, p: Plan) -> bool:
    return store(p).has(key(cfg, p))


def load(cfg: Profile, p: Plan) -> dict:
    r = store(p).load(key(cfg, p))
    if r["n_val"] != len(p.ids("val")) or (r["p_test"] is not None and len(r["p_test"]) != len(p.ids("test"))):
        raise RuntimeError(f"member cache {key(cfg, p)} does not match its plan")
    return r


def missing(cfg: Profile, plans) -> list[Plan]:
    seen, out = set(), []
    for p in plans:
        k = key(cfg, p)
        if k not in seen and not store(p).has(k):
            seen.add(k)
            out.append(p)
    return out


def fetch(cfg: Profile, plans, train_missing: bool = True) -> list[dict]:
    """Each plan's cached result, in order, after training the missing ones (:func:`train`)."""
    plans = list(plans)
    todo = missing(cfg, plans)
    if todo:
        if not train_missing:
            raise RuntimeError(f"{len(todo)} of {len(plans)} members are not cached")
        train(cfg, todo)
    return [load(cfg, p) for p in plans]


class Arrays:
    """Each split's reduced features, computed once per (backbone, rows, reduction) in this process: the
    split's raw features are loaded, the reduction fitted on its training part, then the raw arrays dropped."""

    def __init__(self, cfg: Profile):
        self.cfg, self._fc, self._done = cfg, {}, {}

    def feature_cache(self, backbone: str):
        from allrep.train.features import for_backbone

        if backbone not in self._fc:
            self._fc[backbone] = for_backbone(self.cfg, backbone)
        return self._fc[backbone]

    def __call__(self, p: Plan) -> dict:
        from allrep.train.features import split_arrays
        from allrep.train.heads import Reduction

        ts = p.training
        k = (p.backbone, p.rows, ts.pool, ts.pca, ts.whiten)
        if k not in self._done:
            frame = p.frame()
            roles = tuple(r for r in ("train", "val", "test") if (frame["role"] == r).any())
            a = split_arrays(self.feature_cache(p.backbone), frame, self.cfg.features.views, roles=roles)
            red = Reduction.fit(a["train"][0], ts.pool, ts.pca, ts.whiten)
            self._done[k] = dict(reduction=red, **{r: (red(a[r][0]), a[r][1]) for r in roles})
        return self._done[k]

    def reduction_sha256(self, p: Plan) -> str:
        return self(p)["reduction"].sha256()

    def task(self, p: Plan) -> dict:
        """The training task of a plan (:func:`allrep.train.heads.run_pool`)."""
        a = self(p)
        ts = p.training
        return dict(X_train=a["train"][0], y_train=a["train"][1], X_val=a["val"][0], y_val=a["val"][1],
                    X_test=a["test"][0] if "test" in a else None, hp=p.head, seed=p.seed, epochs=ts.epochs,
                    patience=ts.patience, min_delta=ts.min_delta)


def pool_key(arrays: Arrays, p: Plan) -> tuple:
    """Heads that can share one stacked model: same feature shape, architecture and batch size."""
    a = arrays(p)
    return (a["train"][0].shape[1:], (p.head.projection, p.head.gru_units, p.head.dense_units), p.training.batch_size,
            p.keep_weights)


class _Saving:
    """A :func:`run_pool` source over plans that caches each head as it ends."""

    def __init__(self, cfg: Profile, plans, arrays: Arrays, on_done=None):
        self.cfg, self.plans, self.arrays, self.i, self.on_done = cfg, list(plans), arrays, 0, on_done

    def next(self):
        if self.i >= len(self.plans):
            return None
        self.i += 1
        return self.i - 1, self.arrays.task(self.plans[self.i - 1])

    def done(self, tid, res) -> None:
        p = self.plans[tid]
        save(self.cfg, p, res, self.arrays.reduction_sha256(p))
        if self.on_done:
            self.on_done(p)


def train(cfg: Profile, plans, on_done=None) -> int:
    """Train every plan (missing or not) and cache it; returns the number trained."""
    from allrep.train.heads import run_pool

    plans = list(plans)
    arrays = Arrays(cfg)
    pools: dict[tuple, list[Plan]] = {}
    for p in plans:
        pools.setdefault(pool_key(arrays, p), []).append(p)
    for (_, _, batch, keep), group in pools.items():
        run_pool(_Saving(cfg, group, arrays, on_done), 0, 0, batch, keep_weights=keep)
    return len(plans)


def member_record(res: dict, patience: int) -> dict:
    """What the committed members tables hold of one head (no timings: those are not reproducible)."""
    from allrep.train.heads import ended_by

    return dict(epochs_run=res["epochs_run"], best_epoch=res["best_epoch"],
                ended_by=ended_by(res["epochs_run"], res["best_epoch"], patience))
