"""The steps the notebooks call: splits, features, tuning, ensembles, results files.

Everything a step writes lives under the profile's ``output`` folder (results
files, small, committed for the paper profile) or the cache folder
(``$ALLREP_CACHE``, default ``.cache/`` in the project: features, tuner trials,
members; never committed). Caches are keyed by what they depend on, so any
change of settings recomputes exactly what it affects.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .config import PROJECT_ROOT, Config
from .data import check_dataset, manifest
from .errors import AllrepError
from .features import FeatureCache
from .io import atomic_write_csv, atomic_write_json
from .models import HeadParams, Weights, check_backbone, resolve_weights
from .splits import PROTOCOLS, make_splits
from .training import MemberStore, TrainSettings, train_ensemble

PROB_COLUMNS = ["protocol", "repeat", "dataset", "backbone", "member", "id", "label", "p_all"]


# ----------------------------------------------------------------------------- places
def scratch_root() -> Path:
    """Where non-paper profiles write (``$ALLREP_SCRATCH``, default ``scratch/``; ignored by git)."""
    return Path(os.environ.get("ALLREP_SCRATCH", PROJECT_ROOT / "scratch"))


def profile_root(cfg: Config) -> Path:
    """The paper profile writes into the project (committed); every other profile into scratch."""
    return PROJECT_ROOT if cfg.name == "paper" else scratch_root() / cfg.name


def output_dir(cfg: Config) -> Path:
    return profile_root(cfg) / "results"


def cache_dir() -> Path:
    return Path(os.environ.get("ALLREP_CACHE", PROJECT_ROOT / ".cache"))


def backbones(cfg: Config) -> list[str]:
    return [check_backbone(b) for b in cfg["use_backbones"]]


def weights_for(cfg: Config, backbone: str) -> Weights:
    spec = cfg.backbone(backbone)
    return resolve_weights(backbone, spec.get("weights", "imagenet"), cfg.get("weights_dir"), spec.get("input_size"),
                           seed=int(cfg["seed"]))


def feature_cache(cfg: Config, backbone: str, progress=None) -> FeatureCache:
    f = cfg["features"]
    return FeatureCache(weights_for(cfg, backbone), cache_dir(), f["batch_size"], progress=progress,
                        pool=int(f.get("pool", 1)))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def seed_for(cfg: Config, *parts) -> int:
    """A stable 31-bit seed derived from the profile seed and names (no ``random()``)."""
    h = hashlib.sha256(json.dumps([int(cfg["seed"]), *map(str, parts)]).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


# ----------------------------------------------------------------------------- splits
def splits(cfg: Config, dataset: str, protocol: str) -> pd.DataFrame:
    """The split file of (dataset, protocol), written on first use."""
    check_dataset(dataset)
    if protocol not in PROTOCOLS:
        raise AllrepError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    s = cfg["splits"]
    df = make_splits(dataset, protocol, int(cfg["seed"]), float(s["test_fraction"]), float(s["val_fraction"]),
                     int(s["repeats"]))
    path = output_dir(cfg) / "splits" / f"{dataset}_{protocol}.csv"
    if not path.is_file() or not pd.read_csv(path).equals(df):
        atomic_write_csv(df, path)
    return df


def arrays(cfg: Config, fc: FeatureCache, split: pd.DataFrame, views: int, roles=("train", "val", "test")):
    """(X, y, ids) for train (all views), val and test (view 0) of one repeat."""
    by_id = {it.id: it for it in manifest("combined")}
    out = {}
    for role in roles:
        part = split[split["role"] == role]
        items = [by_id[i] for i in part["id"]]
        v = views if role == "train" else 1
        X = fc.load(items, v)
        y = np.repeat(part["label"].to_numpy(dtype=int), v)
        out[role] = (X, y, list(part["id"]))
    return out


# ----------------------------------------------------------------------------- tuning
def best_params_path(cfg: Config) -> Path:
    return output_dir(cfg) / "tuning" / "best_hyperparameters.csv"


def tuned_params(cfg: Config, backbone: str, dataset: str) -> tuple[HeadParams, str]:
    """Tuned head for (backbone, dataset) if the tuning step wrote one, else the profile's defaults."""
    path = best_params_path(cfg)
    if path.is_file():
        df = pd.read_csv(path)
        row = df[(df["backbone"] == backbone) & (df["dataset"] == dataset)]
        if len(row):
            return HeadParams.from_dict(row.iloc[0].to_dict()), "tuned"
    return HeadParams.from_dict(cfg["head"]), "profile default"


def run_tuning(cfg: Config, backbone: str, dataset: str, progress=print) -> dict:
    from .tuning import tune

    t0 = time.perf_counter()
    tcfg = cfg["tuning"]
    fc = feature_cache(cfg, backbone, progress)
    split = splits(cfg, dataset, tcfg.get("protocol", "paper"))
    a = arrays(cfg, fc, split[split["repeat"] == 0], int(cfg["features"]["views"]), roles=("train", "val"))
    ts = TrainSettings.from_dict(cfg["training"])
    from .tuning import SEARCH_SPACE_DOC, TRAINER

    key = _digest(dict(space=SEARCH_SPACE_DOC, trainer=TRAINER, w=fc.w.key, size=fc.w.input_size, features=cfg["features"], tuning=tcfg,
                       training=cfg["training"], seed=cfg["seed"], split=list(a["val"][2])))
    from .training import pca_reduce

    Xtr, Xva = pca_reduce(a["train"][0], a["val"][0], k=ts.pca)
    res = tune(Xtr, a["train"][1], Xva, a["val"][1], ts, tcfg["trials"], tcfg["initial_points"],
               seed_for(cfg, "tune", backbone, dataset), cache_dir() / "tuning", f"{backbone}-{dataset}-{key}",
               tcfg.get("executions_per_trial", 1), tcfg.get("epochs"))
    best = dict(backbone=backbone, dataset=dataset, **res["best"], weights=fc.w.source)
    path = best_params_path(cfg)
    df = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if len(df):
        df = df[~((df["backbone"] == backbone) & (df["dataset"] == dataset))]
    df = pd.concat([df, pd.DataFrame([best])], ignore_index=True).sort_values(["backbone", "dataset"])
    atomic_write_csv(df, path)
    trials = pd.DataFrame(res["trials"])
    atomic_write_csv(trials, output_dir(cfg) / "tuning" / f"trials_{backbone}_{dataset}.csv")
    return dict(best=res["best"], trials=trials, seconds=time.perf_counter() - t0, feature_seconds=fc.seconds)


# ----------------------------------------------------------------------------- ensembles
def run_ensemble(cfg: Config, backbone: str, dataset: str, protocols=PROTOCOLS, progress=print) -> dict:
    """Train (or reuse) every member for (backbone, dataset) under each protocol; write probabilities."""
    t0 = time.perf_counter()
    fc = feature_cache(cfg, backbone, progress)
    hp, hp_source = tuned_params(cfg, backbone, dataset)
    ts = TrainSettings.from_dict(cfg["training"])
    views = int(cfg["features"]["views"])
    M = int(cfg["ensemble"]["members"])
    frames, trained, reused, member_meta = [], 0, 0, []
    for protocol in protocols:
        split_all = splits(cfg, dataset, protocol)
        for r in sorted(split_all["repeat"].unique()):
            split = split_all[split_all["repeat"] == r]
            key_base = _digest(dict(algo="joint-heads-2", w=fc.w.key, size=fc.w.input_size, features=cfg["features"],
                                    hp=hp.to_dict(),
                                    ts=ts.__dict__, split=split[["id", "role"]].values.tolist()))
            store = MemberStore(cache_dir() / "members" / f"{backbone}-{key_base}")
            seeds = [seed_for(cfg, "member", dataset, protocol, int(r), backbone, m) for m in range(M)]
            keys = [f"m{m}-s{s}" for m, s in enumerate(seeds)]
            missing = [m for m in range(M) if not store.has(keys[m])]
            reused += M - len(missing)
            if missing:  # train the missing members of this split together, each as if alone
                a = arrays(cfg, fc, split, views)
                results = train_ensemble(*a["train"][:2], *a["val"][:2], a["test"][0], hp, ts,
                                         [seeds[m] for m in missing])
                for m, res in zip(missing, results):
                    store.save(keys[m], res, dict(seed=seeds[m], weights=fc.w.to_dict(), hp=hp.to_dict(),
                                                  hp_source=hp_source, test_ids=a["test"][2]))
                trained += len(missing)
                if progress:
                    ep = [res["epochs_run"] for res in results]
                    progress(f"{backbone}/{dataset}/{protocol} r{r}: members {missing} trained "
                             f"({min(ep)}-{max(ep)} epochs, {sum(x['train_seconds'] for x in results):.1f}s)")
            test = split[split["role"] == "test"]
            for m in range(M):
                mem = store.load(keys[m])
                assert list(test["id"]) == mem["test_ids"], "member cache does not match the split"
                frames.append(pd.DataFrame(dict(protocol=protocol, repeat=int(r), dataset=dataset, backbone=backbone,
                                                member=m, id=test["id"].to_numpy(), label=test["label"].to_numpy(),
                                                p_all=np.round(mem["p_test"], 6))))
                member_meta.append(dict(protocol=protocol, repeat=int(r), member=m, seed=seeds[m],
                                        epochs_run=mem["epochs_run"], best_epoch=mem["best_epoch"],
                                        train_seconds=mem["train_seconds"]))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    atomic_write_csv(probs, output_dir(cfg) / "probabilities" / f"{dataset}_{backbone}.csv")
    meta = dict(backbone=backbone, dataset=dataset, weights=fc.w.to_dict(), hp=hp.to_dict(), hp_source=hp_source,
                members_trained=trained, members_reused=reused, feature_seconds=fc.seconds,
                seconds=time.perf_counter() - t0)
    atomic_write_json(output_dir(cfg) / "probabilities" / f"{dataset}_{backbone}.json", meta)
    return dict(probabilities=probs, members=pd.DataFrame(member_meta), **meta)


def load_probabilities(cfg: Config, datasets=None, backbones_=None) -> pd.DataFrame:
    folder = output_dir(cfg) / "probabilities"
    frames = [pd.read_csv(p) for p in sorted(folder.glob("*.csv"))]
    if not frames:
        raise AllrepError(f"no probabilities in {folder}: run the ensemble step first (allrep run --profile {cfg.name})")
    df = pd.concat(frames, ignore_index=True)
    if datasets:
        df = df[df["dataset"].isin(datasets)]
    if backbones_:
        df = df[df["backbone"].isin(backbones_)]
    return df


def weights_table(cfg: Config) -> pd.DataFrame:
    """Which weights each backbone used in this profile's results."""
    rows = []
    for p in sorted((output_dir(cfg) / "probabilities").glob("*.json")):
        m = json.loads(p.read_text())
        w = m["weights"]
        rows.append(dict(backbone=m["backbone"], dataset=m["dataset"], weights=w["kind"], source=w["source"],
                         sha256=(w.get("sha256") or "")[:16], input_size=w["input_size"], preprocess=w["preprocess"],
                         hyperparameters=m["hp_source"]))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- from scratch
SCRATCH_COLUMNS = ["recipe", *PROB_COLUMNS]


def scratch_splits(cfg: Config, dataset: str) -> list[tuple[str, int, pd.DataFrame]]:
    """(protocol, repeat, split) the from-scratch runs use: the paper split, then the first grouped repeats."""
    out = [("paper", 0, splits(cfg, dataset, "paper"))]
    g = splits(cfg, dataset, "grouped")
    out += [("grouped", int(r), g[g["repeat"] == r]) for r in sorted(g["repeat"].unique())[: int(cfg["scratch"]["repeats"])]]
    return out


def run_scratch(cfg: Config, dataset: str, progress=print) -> dict:
    """Train (or reuse) the from-scratch members of every recipe in ``scratch.recipes`` on ``dataset``.

    Every member starts from random weights drawn from its own seed and trains the whole hybrid
    (:mod:`allrep.scratch`); splits are the ensembles' own, so the fusion comparison is paired."""
    from .data import load_images
    from .scratch import Recipe, train_member

    t0 = time.perf_counter()
    sc = cfg["scratch"]
    bb = check_backbone(sc["backbone"])
    size = int(sc["input_size"])
    hp = HeadParams.from_dict(cfg["head"])
    recipes = {name: Recipe.from_dict(r) for name, r in sc["recipes"].items()}
    by_id = {it.id: it for it in manifest(dataset)}
    images: dict = {}
    store = MemberStore(cache_dir() / "scratch" / f"{bb}-{dataset}")
    frames, members, curves, trained = [], [], [], 0
    for protocol, r, split in scratch_splits(cfg, dataset):
        parts = {role: split[split["role"] == role] for role in ("train", "val", "test")}
        for name, rec in recipes.items():
            for m in range(int(sc["members"])):
                seed = seed_for(cfg, "scratch", dataset, protocol, r, bb, name, m)
                w = resolve_weights(bb, "none", input_size=size, seed=seed)
                key = _digest(dict(algo="scratch-1", w=w.to_dict(), hp=hp.to_dict(), recipe=rec.to_dict(),
                                   split=split[["id", "role"]].values.tolist()))
                if not store.has(key):
                    if not images:
                        images.update(zip(by_id, load_images(list(by_id.values()), size)))
                    X = {role: np.stack([images[i] for i in p["id"]]) for role, p in parts.items()}
                    res = train_member(w, hp, rec, X["train"], parts["train"]["label"].to_numpy(), X["val"],
                                       parts["val"]["label"].to_numpy(), X["test"], seed)
                    store.save(key, res, dict(recipe=name, seed=seed, weights=w.to_dict(), hp=hp.to_dict(),
                                              test_ids=list(parts["test"]["id"])))
                    trained += 1
                    if progress:
                        progress(f"{bb}/{dataset}/{protocol} r{r} {name} m{m}: {res['epochs_run']} epochs, "
                                 f"{res['train_seconds']:.0f}s")
                mem = store.load(key)
                test = parts["test"]
                assert list(test["id"]) == mem["test_ids"], "scratch member cache does not match the split"
                frames.append(pd.DataFrame(dict(recipe=name, protocol=protocol, repeat=r, dataset=dataset,
                                                backbone=bb, member=m, id=test["id"].to_numpy(),
                                                label=test["label"].to_numpy(), p_all=np.round(mem["p_test"], 6))))
                members.append(dict(recipe=name, protocol=protocol, repeat=r, member=m, seed=seed,
                                    epochs_run=mem["epochs_run"], best_epoch=mem["best_epoch"],
                                    final_train_accuracy=round(mem["final_train_accuracy"], 4),
                                    train_seconds=round(mem["train_seconds"], 1)))
                h = pd.DataFrame(mem["history"])
                curves.append(h.assign(recipe=name, protocol=protocol, repeat=r, member=m, epoch=np.arange(1, len(h) + 1)))
    probs = pd.concat(frames, ignore_index=True)[SCRATCH_COLUMNS]
    members = pd.DataFrame(members)
    atomic_write_csv(probs, output_dir(cfg) / "scratch" / f"{dataset}_{bb}.csv")
    atomic_write_csv(members, output_dir(cfg) / "scratch" / f"{dataset}_{bb}_members.csv")
    return dict(probabilities=probs, members=members, curves=pd.concat(curves, ignore_index=True),
                members_trained=trained, backbone=bb, input_size=size,
                recipes={k: v.to_dict() for k, v in recipes.items()}, seconds=time.perf_counter() - t0)
