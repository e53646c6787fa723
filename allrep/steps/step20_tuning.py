"""Step 20: nested Bayesian optimisation of one backbone's GRU head on one dataset.

One search per split (the paper split and every grouped repeat), each on that split's training
part with its grouped validation part as the objective; test images are never loaded
(:mod:`allrep.tuning`). The searches of the variant run in lockstep, one head per search per round,
and every trial is cached: a killed search resumes.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import pandas as pd

from .. import tuning
from ..features import for_backbone, split_arrays
from ..places import cache_dir
from ..registry import Context
from ..repro import digest, seed_for
from ..training import reduce_channels

TUNED = ("learning_rate", "weight_decay", "dropout")


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    t0 = time.perf_counter()
    fc = for_backbone(cfg, backbone)
    ts, arch = cfg.training, cfg.head
    space = tuning.space_table().to_dict("records")
    searches = {}
    for protocol, r, split in ctx.each_split():
        a = split_arrays(fc, split, cfg.features.views, roles=("train", "val"))
        Xtr, Xva = reduce_channels(a["train"][0], a["val"][0], ts=ts)
        seed = seed_for(cfg.seed, "tune", backbone, dataset, protocol, r)
        key = digest(dict(algo=tuning.ALGO, space=space, w=fc.w.key, size=fc.w.input_size,
                          features=asdict(cfg.features), arch=arch.to_dict(), ts=asdict(ts), seed=seed,
                          split=split.loc[split["role"] != "test", ["id", "role"]].values.tolist()))
        searches[(protocol, r)] = dict(X_train=Xtr, y_train=a["train"][1], X_val=Xva, y_val=a["val"][1], seed=seed,
                                       key=f"{backbone}-{dataset}-{key}")
    res = tuning.tune_splits({f"{p}-{r}": s for (p, r), s in searches.items()}, arch, ts, cfg.tuning.trials,
                             cfg.tuning.initial_points, cache_dir() / "tuning")
    best, trials = [], []
    for (protocol, r) in searches:
        out = res[f"{protocol}-{r}"]
        best.append(dict(protocol=protocol, repeat=r, **out["best"].to_dict(), val_loss=round(out["best_loss"], 6)))
        trials += [dict(protocol=protocol, repeat=r, **t) for t in out["trials"]]
    best = pd.DataFrame(best).assign(backbone=backbone, dataset=dataset)
    trials = pd.DataFrame(trials).assign(backbone=backbone, dataset=dataset).round(6)
    ctx.write_csv(best, "best")
    ctx.write_csv(trials, "trials")
    return dict(best=best, trials=trials, seconds=time.perf_counter() - t0, feature_seconds=fc.seconds, weights=fc.w)


def trial_gain(trials: pd.DataFrame, early: int) -> pd.DataFrame:
    """What the trials after the first ``early`` gained: per search, the best validation NLL after
    ``early`` trials and after all of them (the cost, on validation, of stopping a search earlier)."""
    rows = []
    for (protocol, r), g in trials.groupby(["protocol", "repeat"], sort=True):
        g = g.sort_values("trial")
        rows.append(dict(protocol=protocol, repeat=r, best_after_early=g["val_loss"].iloc[:early].min(),
                         best_after_all=g["val_loss"].min()))
    out = pd.DataFrame(rows)
    out["gain"] = out["best_after_early"] - out["best_after_all"]
    return out
