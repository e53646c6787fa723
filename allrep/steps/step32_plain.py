"""Step 32: the plain reference head of one backbone on one dataset, on every split.

One untuned head (the profile's ``plain:`` settings, fixed and documented, never tuned), one
member per split, trained on the same cached features and split as the tuned ensemble, until early
stopping on the split's validation part ends it (the epoch cap is set far above where that happens).
If the tuned ensemble does not beat it, tuning and ensembling bought nothing, and the book says so.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from ..features import for_backbone, split_arrays
from ..places import cache_dir
from ..progress import bar
from ..registry import PROTOCOLS, Context
from ..repro import digest, seed_for
from ..training import MemberStore, ended_by, train_ensemble
from .step30_ensemble import PROB_COLUMNS


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    fc = for_backbone(cfg, backbone)
    hp, ts = cfg.plain.head, cfg.plain.training
    frames, members, trained = [], [], 0
    jobs = [(protocol, split_all, int(r)) for protocol in PROTOCOLS
            for split_all in [ctx.read_csv("splits", protocol=protocol)] for r in sorted(split_all["repeat"].unique())]
    for protocol, split_all, r in bar(jobs, desc=f"{backbone}/{dataset} plain head"):
        split = split_all[split_all["repeat"] == r]
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
        frames.append(pd.DataFrame(dict(protocol=protocol, repeat=r, dataset=dataset, backbone=backbone, member=0,
                                        id=test["id"].to_numpy(), label=test["label"].to_numpy(),
                                        p_all=np.round(mem["p_test"], 6))))
        members.append(dict(protocol=protocol, repeat=r, seed=seed, epochs_run=mem["epochs_run"],
                            best_epoch=mem["best_epoch"], ended_by=ended_by(mem["epochs_run"], mem["best_epoch"],
                                                                            ts.patience),
                            train_seconds=round(mem["train_seconds"], 2), dataset=dataset, backbone=backbone))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    ctx.write_csv(probs, "probabilities")
    members = pd.DataFrame(members)
    ctx.write_csv(members, "members")
    return dict(probabilities=probs, members=members, trained=trained, weights=fc.w)
