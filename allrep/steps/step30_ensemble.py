"""Step 30: the deep ensemble of one backbone on one dataset, on the paper split and on every
grouped repeat: the tuned head, one seed per member (initialisation and data order), early
stopping on the split's validation part. Each split's head is the one its own search chose (step 20). All
missing members of all splits train together in groups of heads traced as one model; members are
cached one by one."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import pandas as pd

from ..features import for_backbone, split_arrays
from ..places import cache_dir
from ..profile import Head, load_section
from ..registry import Context
from ..repro import digest, seed_for
from ..training import MemberStore, ended_by, reduce_channels, train_heads

GROUP = 15  # heads stacked in one model: 6 splits x 5 members train in 2 groups
PROB_COLUMNS = ["protocol", "repeat", "dataset", "backbone", "member", "id", "label", "p_all"]


def each_split(ctx: Context) -> list[tuple[str, int, pd.DataFrame]]:
    """(protocol, repeat, split) of every split of the variant's dataset (:meth:`Context.each_split`)."""
    return ctx.each_split()


def member_frame(test: pd.DataFrame, p_test, protocol: str, repeat: int, dataset: str, backbone: str,
                       member: int) -> pd.DataFrame:
    """One member's p(ALL) on a split's test images, in the committed column order (6 decimals)."""
    return pd.DataFrame(dict(protocol=protocol, repeat=repeat, dataset=dataset, backbone=backbone, member=member,
                             id=test["id"].to_numpy(), label=test["label"].to_numpy(),
                             p_all=np.round(p_test, 6)))[PROB_COLUMNS]


def tuned_heads(ctx: Context) -> dict[tuple[str, int], Head]:
    """The head each split's own search chose (step 20), by (protocol, repeat)."""
    best = ctx.read_csv("best")
    fields = list(Head().to_dict())
    return {(row["protocol"], int(row["repeat"])): load_section(Head, {k: row[k] for k in fields},
                                                                   f"tuning/best_{ctx.backbone}_{ctx.dataset}.csv")
            for row in best.to_dict("records")}


def run(ctx: Context) -> dict:
    """Train (or reuse) every member of every split; write probabilities and their record."""
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    t0 = time.perf_counter()
    fc = for_backbone(cfg, backbone)
    heads = tuned_heads(ctx)
    ts = cfg.training
    views, M = cfg.features.views, cfg.ensemble.members
    plan, tasks, owners = [], [], []
    for protocol, r, split in ctx.each_split():
        hp = heads[(protocol, r)]
        key_base = digest(dict(algo="heads-1", w=fc.w.key, size=fc.w.input_size, features=asdict(cfg.features),
                               hp=hp.to_dict(), ts=asdict(ts), split=split[["id", "role"]].values.tolist()))
        store = MemberStore(cache_dir() / "members" / f"{backbone}-{key_base}")
        seeds = [seed_for(cfg.seed, "member", dataset, protocol, r, backbone, m) for m in range(M)]
        keys = [f"m{m}-s{s}" for m, s in enumerate(seeds)]
        plan.append((protocol, r, split, hp, store, seeds, keys))
        missing = [m for m in range(M) if not store.has(keys[m])]
        if missing:  # every missing member of every split trains together, each as if alone
            a = split_arrays(fc, split, views)
            Xtr, Xva, Xte = reduce_channels(a["train"][0], a["val"][0], a["test"][0], ts=ts)
            for m in missing:
                tasks.append(dict(X_train=Xtr, y_train=a["train"][1], X_val=Xva, y_val=a["val"][1], X_test=Xte,
                                  hp=hp, seed=seeds[m]))
                owners.append((store, keys[m], dict(seed=seeds[m], weights=fc.w.to_dict(), hp=hp.to_dict(),
                                                    test_ids=a["test"][2], val_ids=a["val"][2])))
    # cached one member at a time, as each group of heads finishes (a kill loses at most one group)
    for i in range(0, len(tasks), GROUP):
        for (store, key, meta), res in zip(owners[i:i + GROUP],
                                           train_heads(tasks[i:i + GROUP], ts.epochs, ts.patience, ts.batch_size,
                                                       ts.min_delta)):
            store.save(key, res, meta)
    frames, val_frames, member_meta = [], [], []
    for protocol, r, split, hp, store, seeds, keys in plan:
        test, val = split[split["role"] == "test"], split[split["role"] == "val"]
        for m in range(M):
            mem = store.load(keys[m])
            if list(test["id"]) != mem["test_ids"] or list(val["id"]) != mem["val_ids"]:
                raise RuntimeError(f"member cache {store.dir.name}/{keys[m]} does not match the split")
            frames.append(member_frame(test, mem["p_test"], protocol, r, dataset, backbone, m))
            val_frames.append(member_frame(val, mem["p_val"], protocol, r, dataset, backbone, m))
            member_meta.append(dict(protocol=protocol, repeat=r, member=m, seed=seeds[m],
                                    epochs_run=mem["epochs_run"], best_epoch=mem["best_epoch"],
                                    ended_by=ended_by(mem["epochs_run"], mem["best_epoch"], ts.patience),
                                    train_seconds=round(mem["train_seconds"], 2)))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    ctx.write_csv(pd.concat(val_frames, ignore_index=True)[PROB_COLUMNS], "validation")  # for calibration (step 40)
    members = pd.DataFrame(member_meta).assign(dataset=dataset, backbone=backbone)
    ctx.write_csv(members, "members")
    # the record holds only what the probabilities depend on, so an identical re-execution leaves it
    # byte-identical and re-executes nothing downstream; what this execution did is returned (and shown)
    meta = dict(backbone=backbone, dataset=dataset, weights=fc.w.to_dict(), hp_source="tuned per split (step 20)",
                members_per_split=M)
    ctx.write_json(meta, "meta")
    return dict(probabilities=probs, members=members, members_trained=len(tasks),
                members_reused=len(plan) * M - len(tasks), feature_seconds=fc.seconds,
                seconds=time.perf_counter() - t0, **meta)
