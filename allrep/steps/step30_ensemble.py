"""Step 30: the deep ensemble of one backbone on one dataset, on the paper split and on every
grouped repeat: the tuned head, one seed per member (initialisation and data order), early
stopping on the split's validation part. Members are cached one by one (a kill loses at most
the split in flight)."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import pandas as pd

from ..features import for_backbone, split_arrays
from ..places import cache_dir
from ..profile import Head, load_section
from ..progress import bar
from ..registry import PROTOCOLS, Context
from ..repro import digest, seed_for
from ..training import MemberStore, ended_by, train_ensemble

PROB_COLUMNS = ["protocol", "repeat", "dataset", "backbone", "member", "id", "label", "p_all"]


def each_split(ctx: Context) -> list[tuple[str, int, pd.DataFrame]]:
    """(protocol, repeat, split) of every split of the variant's dataset: the paper split, then each grouped repeat."""
    out = []
    for protocol in PROTOCOLS:
        frame = ctx.read_csv("splits", protocol=protocol)
        out += [(protocol, int(r), part) for r, part in frame.groupby("repeat", sort=True)]
    return out


def member_frame(test: pd.DataFrame, p_test, protocol: str, repeat: int, dataset: str, backbone: str,
                       member: int) -> pd.DataFrame:
    """One member's p(ALL) on a split's test images, in the committed column order (6 decimals)."""
    return pd.DataFrame(dict(protocol=protocol, repeat=repeat, dataset=dataset, backbone=backbone, member=member,
                             id=test["id"].to_numpy(), label=test["label"].to_numpy(),
                             p_all=np.round(p_test, 6)))[PROB_COLUMNS]


def tuned_head(ctx: Context) -> Head:
    best = ctx.read_json("best")
    return load_section(Head, best["hyperparameters"], f"tuning/best_{ctx.backbone}_{ctx.dataset}.json")


def run(ctx: Context) -> dict:
    """Train (or reuse) every member under each protocol; write probabilities and their record."""
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    t0 = time.perf_counter()
    fc = for_backbone(cfg, backbone)
    hp, hp_source = tuned_head(ctx), "tuned"
    ts = cfg.training
    views, M = cfg.features.views, cfg.ensemble.members
    frames, trained, reused, member_meta = [], 0, 0, []
    for protocol, r, split in bar(each_split(ctx), desc=f"{backbone}/{dataset} splits"):
        key_base = digest(dict(algo="joint-heads-2", w=fc.w.key, size=fc.w.input_size, features=asdict(cfg.features),
                               hp=hp.to_dict(), ts=ts.__dict__, split=split[["id", "role"]].values.tolist()))
        store = MemberStore(cache_dir() / "members" / f"{backbone}-{key_base}")
        seeds = [seed_for(cfg.seed, "member", dataset, protocol, r, backbone, m) for m in range(M)]
        keys = [f"m{m}-s{s}" for m, s in enumerate(seeds)]
        missing = [m for m in range(M) if not store.has(keys[m])]
        reused += M - len(missing)
        if missing:  # train the missing members of this split together, each as if alone
            a = split_arrays(fc, split, views)
            results = train_ensemble(*a["train"][:2], *a["val"][:2], a["test"][0], hp, ts, [seeds[m] for m in missing])
            for m, res in zip(missing, results):
                store.save(keys[m], res, dict(seed=seeds[m], weights=fc.w.to_dict(), hp=hp.to_dict(),
                                              hp_source=hp_source, test_ids=a["test"][2]))
            trained += len(missing)
        test = split[split["role"] == "test"]
        for m in range(M):
            mem = store.load(keys[m])
            if list(test["id"]) != mem["test_ids"]:
                raise RuntimeError(f"member cache {store.dir.name}/{keys[m]} does not match the split")
            frames.append(member_frame(test, mem["p_test"], protocol, r, dataset, backbone, m))
            member_meta.append(dict(protocol=protocol, repeat=r, member=m, seed=seeds[m],
                                    epochs_run=mem["epochs_run"], best_epoch=mem["best_epoch"],
                                    ended_by=ended_by(mem["epochs_run"], mem["best_epoch"], ts.patience),
                                    train_seconds=round(mem["train_seconds"], 2)))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    members = pd.DataFrame(member_meta).assign(dataset=dataset, backbone=backbone)
    ctx.write_csv(members, "members")
    # the record holds only what the probabilities depend on, so an identical re-execution leaves it
    # byte-identical and re-executes nothing downstream; what this execution did is returned (and shown)
    meta = dict(backbone=backbone, dataset=dataset, weights=fc.w.to_dict(), hp=hp.to_dict(), hp_source=hp_source,
                members_per_split=M)
    ctx.write_json(meta, "meta")
    return dict(probabilities=probs, members=members, members_trained=trained,
                members_reused=reused, feature_seconds=fc.seconds, seconds=time.perf_counter() - t0, **meta)
