"""Step 20: Bayesian optimisation of one backbone's GRU head on one dataset.

The objective is the validation loss on the validation part carved from the training images of
``tuning.protocol``'s first split; the test images are never loaded. Trials are cached by
keras-tuner under the cache folder and resume after a kill.
"""
from __future__ import annotations

import time

import pandas as pd

from .. import tuning
from ..features import for_backbone, split_arrays
from ..places import cache_dir
from ..registry import Context
from ..repro import digest, seed_for
from ..training import pca_reduce


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    t0 = time.perf_counter()
    tcfg = cfg.tuning
    fc = for_backbone(cfg, backbone)
    split = ctx.read_csv("splits", protocol=tcfg.protocol)
    a = split_arrays(fc, split[split["repeat"] == 0], cfg.features.views, roles=("train", "val"))
    ts = cfg.training
    slices = cfg.slice("features", "tuning", "training")
    key = digest(dict(space=tuning.space_table().to_dict("records"), trainer=tuning.TRAINER, w=fc.w.key,
                      size=fc.w.input_size, seed=cfg.seed, split=list(a["val"][2]), **slices))
    Xtr, Xva = pca_reduce(a["train"][0], a["val"][0], k=ts.pca)
    res = tuning.tune(Xtr, a["train"][1], Xva, a["val"][1], ts, tcfg.trials, tcfg.initial_points,
                      seed_for(cfg.seed, "tune", backbone, dataset), cache_dir() / "tuning",
                      f"{backbone}-{dataset}-{key}", tcfg.executions_per_trial, tcfg.epochs)
    best = dict(backbone=backbone, dataset=dataset, protocol=tcfg.protocol, hyperparameters=res["best"],
                weights=dict(kind=fc.w.kind, source=fc.w.source, sha256=fc.w.sha256))
    ctx.write_json(best, "best")
    trials = pd.DataFrame(res["trials"])
    ctx.write_csv(trials, "trials")
    return dict(best=res["best"], trials=trials, seconds=time.perf_counter() - t0, feature_seconds=fc.seconds,
                weights=fc.w)
