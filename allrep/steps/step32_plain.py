"""Step 32: the plain reference head of one backbone on one dataset, on every split.

One untuned head (the profile's ``plain:`` settings, fixed and documented, never tuned), one
member per split, trained on the same cached features and split as the tuned ensemble, until early
stopping on the split's validation part ends it (the epoch cap is set far above where that happens).
If the tuned ensemble does not beat it, tuning and ensembling bought nothing, and the book says so.
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from ..features import for_backbone, split_arrays
from ..places import cache_dir
from ..registry import Context
from ..repro import digest, seed_for
from ..training import MemberStore, ended_by, reduce_channels, train_heads
from .step30_ensemble import PROB_COLUMNS, member_frame


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    fc = for_backbone(cfg, backbone)
    hp, ts = cfg.plain.head, cfg.plain.training
    store = MemberStore(cache_dir() / "plain" / f"{backbone}-{dataset}")
    plan, tasks, owners = [], [], []
    for protocol, r, split in ctx.each_split():
        key = digest(dict(algo="plain-2", w=fc.w.key, size=fc.w.input_size, features=asdict(cfg.features),
                          hp=hp.to_dict(), ts=asdict(ts), min_delta=cfg.plain.min_delta,
                          split=split[["id", "role"]].values.tolist()))
        seed = seed_for(cfg.seed, "plain", dataset, protocol, r, backbone)
        plan.append((protocol, r, split, key, seed))
        if not store.has(key):  # the missing splits' heads train together, each as if alone
            a = split_arrays(fc, split, cfg.features.views)
            Xtr, Xva, Xte = reduce_channels(a["train"][0], a["val"][0], a["test"][0], ts=ts)
            tasks.append(dict(X_train=Xtr, y_train=a["train"][1], X_val=Xva, y_val=a["val"][1], X_test=Xte, hp=hp,
                              seed=seed))
            owners.append((key, dict(seed=seed, test_ids=a["test"][2])))
    if tasks:
        for (key, meta), res in zip(owners, train_heads(tasks, ts.epochs, ts.patience, ts.batch_size,
                                                        cfg.plain.min_delta)):
            store.save(key, res, meta)
    frames, members = [], []
    for protocol, r, split, key, seed in plan:
        test = split[split["role"] == "test"]
        mem = store.load(key)
        if list(test["id"]) != mem["test_ids"]:
            raise RuntimeError(f"plain-head cache {key} does not match the split")
        frames.append(member_frame(test, mem["p_test"], protocol, r, dataset, backbone, 0))
        members.append(dict(protocol=protocol, repeat=r, seed=seed, epochs_run=mem["epochs_run"],
                            best_epoch=mem["best_epoch"], ended_by=ended_by(mem["epochs_run"], mem["best_epoch"],
                                                                            ts.patience),
                            train_seconds=round(mem["train_seconds"], 2), dataset=dataset, backbone=backbone))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    members = pd.DataFrame(members)
    ctx.write_csv(members, "members")
    return dict(probabilities=probs, members=members, trained=len(tasks), weights=fc.w)
