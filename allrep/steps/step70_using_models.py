"""Step 70: using the models. The final models of ALL-IDB1 and of ALL-IDB2 are each trained on every
image except a few held-out photograph groups (``allrep train-final``, :mod:`allrep.train.final`), then
``allrep.predict`` classifies the held-out images by file, exactly as a user's own images would be:
p(ALL) per backbone and fused, predictive entropy, mutual information and the referral flag.

The held-out groups are nested: they are drawn from the test part of the grouped repeat whose training
part the recipe study folded (``recipe_study.repeat``), so no decision of the recipe saw them. The final models'
recipe and tuned head are the ones that outer split chose inside its own training part (step 20), reused rather
than searched again (the search and the recipe choice were most of this step's cost), so no decision saw the
held-out images either; their early stopping, calibration and referral threshold use a validation part carved
from the other images."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from allrep.data.dataset import data_root, manifest
from allrep.train.final import train_final
from allrep.train.inference import Predictor, predict

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context

DATASETS = ("IDB1", "IDB2")


def held_out_groups(split: pd.DataFrame, repeat: int, seed: int, per_class: int = 2) -> list[str]:
    """``per_class`` photograph groups of each class, drawn with the seed from the test part of grouped
    repeat ``repeat`` of ``split`` (a grouped split file): the part the recipe study never folded."""
    test = split[(split["repeat"] == repeat) & (split["role"] == "test")]
    rng = np.random.default_rng([seed, 70])
    out = []
    for _, part in test.groupby("label", sort=True):
        groups = sorted(part["group"].unique())
        out += sorted(rng.choice(groups, size=min(per_class, len(groups)), replace=False).tolist())
    return out


def decided(ctx: Context, dataset: str, repeat: int) -> dict:
    """backbone -> (head, training, recipe, where) that grouped outer split ``repeat`` chose inside itself (step 20's
    search and recipe choice on its training part): reused by the final models, whose held-out groups lie in that
    split's test part, so no decision saw them."""
    from allrep.train.recipe import split_settings

    out = {}
    for bb in ctx.cfg.use_backbones:
        best = ctx.read_csv("best", backbone=bb, dataset=dataset)
        head, ts = split_settings(ctx.cfg, best, f"tuning/best_{bb}_{dataset}.csv")[("grouped", repeat)]
        row = best[(best["protocol"] == "grouped") & (best["repeat"] == repeat)].iloc[0]
        out[bb] = (head, ts, str(row["recipe"]) if "recipe" in best else "profile",
                   f"chosen inside grouped outer split {repeat} (step 20), whose test part holds the held-out groups")
    return out


def held_out(ctx: Context, dataset: str) -> dict:
    """Train the final models of ``dataset`` without its held-out groups, reusing the decisions of the outer split
    they were drawn from (:func:`decided`), and classify those images by file."""
    cfg = ctx.cfg
    repeat = cfg.recipe_study.repeat
    groups = held_out_groups(ctx.read_csv("splits", dataset=dataset), repeat, cfg.seed)
    folder = train_final(cfg, dataset, groups, decided(ctx, dataset, repeat))
    pr = Predictor(cfg, dataset)
    items = {it.id: it for it in manifest(dataset)}
    ids = sorted(pr.m["held_out"])
    root = data_root()
    df = predict([root / items[i].relpath() for i in ids], cfg.name, dataset, progress=False, predictor=pr)
    df.insert(0, "id", ids)  # by id: the book never shows a machine's path, nor the image
    df.insert(1, "label", ["ALL" if items[i].label else "healthy" for i in ids])
    df = df.drop(columns="image")
    ctx.write_csv(df, f"predictions_{dataset}")
    return dict(predictions=df, groups=groups, folder=folder, manifest=pr.m)


def run(ctx: Context) -> dict:
    return {ds: held_out(ctx, ds) for ds in DATASETS}


def settings_frame(m: dict) -> pd.DataFrame:
    """What the saved model set holds, per backbone and for the fusion: weights, tuned head, calibration map
    and its temperature, epochs."""
    rows = [dict(model=bb, weights=r["weights"]["kind"], learning_rate=f"{r['hp']['learning_rate']:.3g}",
                 weight_decay=f"{r['hp']['weight_decay']:.3g}", dropout=r["hp"]["dropout"],
                 calibration=f"{r['calibration_map']} (T {r['temperature']:.2f})",
                 members_best_epoch=", ".join(map(str, r["best_epoch"])))
            for bb, r in m["backbones"].items()]
    rows.append(dict(model="sum fusion", weights="", learning_rate="", weight_decay="", dropout="",
                     calibration=f"{m['fused_calibration_map']} (T {m['fused_temperature']:.2f})", members_best_epoch=""))
    return pd.DataFrame(rows)


def held_out_summary(res: dict) -> pd.DataFrame:
    """Per dataset: held-out images and groups, correct fused calls as k/n, and how many were referred."""
    rows = []
    for ds, r in res.items():
        p = r["predictions"]
        ok = (p["predicted"] == p["label"])
        rows.append(dict(dataset=ds, groups=len(r["groups"]), images=len(p), correct=f"{int(ok.sum())}/{len(p)}",
                         referred=int(p["refer"].sum()), referred_errors=int((p["refer"] & ~ok).sum())))
    return pd.DataFrame(rows)
