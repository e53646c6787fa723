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
from ..progress import bar
from ..registry import Context
from ..repro import digest, seed_for
from ..training import MemberStore, ended_by, train_ensemble
from .step30_ensemble import PROB_COLUMNS, each_split, member_frame


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    fc = for_backbone(cfg, backbone)
    hp, ts = cfg.plain.head, cfg.plain.training
    frames, members, trained = [], [], 0
    for protocol, r, split in bar(each_split(ctx), desc=f"{backbone}/{dataset} plain head"):
        key = digest(dict(algo="plain-1", w=fc.w.key, size=fc.w.input_size, features=asdict(cfg.features),
                          hp=hp.to_dict(), ts=asdict(ts), min_delta=cfg.plain.min_delta,
                          split=split[["id", "role"]].values.tolist()))
        store = MemberStore(cache_dir() / "plain" / f"{backbone}-{dataset}")
        seed = seed_for(cfg.seed, "plain", dataset, protocol, r, backbone)
        test = split[split["role"] == "test"]
        if not store.has(key):
            a = split_arrays(fc, split, cfg.features.views)
            res = train_ensemble(*a["train"][:2], *a["val"][:2], a["test"][0], hp, ts, [seed],
                                 min_delta=cfg.plain.min_delta)[0]
            store.save(key, res, dict(seed=seed, test_ids=a["test"][2]))
            trained += 1
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
    return dict(probabilities=probs, members=members, trained=trained, weights=fc.w)
