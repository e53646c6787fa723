"""Step 70: using the models. The final models of ALL-IDB2 are trained on every image except a few
held-out photograph groups (``allrep train-final``, :mod:`allrep.final`), then ``allrep.predict``
classifies the held-out images by file, exactly as a user's own images would be: p(ALL) per backbone
and fused, predictive entropy, mutual information and the referral flag."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import data_root, manifest
from ..final import train_final
from ..inference import Predictor, predict
from ..registry import Context
from ..splits import items_frame

DATASET = "IDB2"


def held_out_groups(seed: int, per_class: int = 2) -> list[str]:
    """``per_class`` photograph groups of each class, drawn with the seed."""
    df = items_frame(DATASET)
    rng = np.random.default_rng([seed, 70])
    out = []
    for _, part in df.groupby("label", sort=True):
        groups = sorted(part["group"].unique())
        out += sorted(rng.choice(groups, size=per_class, replace=False).tolist())
    return out


def run(ctx: Context) -> dict:
    cfg = ctx.cfg
    groups = held_out_groups(cfg.seed)
    folder = train_final(cfg, DATASET, groups)
    pr = Predictor(cfg, DATASET)
    items = {it.id: it for it in manifest(DATASET)}
    ids = sorted(pr.m["held_out"])
    root = data_root()
    df = predict([root / items[i].relpath() for i in ids], cfg.name, DATASET, progress=False, predictor=pr)
    df.insert(0, "id", ids)  # by id: the book never shows a machine's path, nor the image
    df.insert(1, "label", ["ALL" if items[i].label else "healthy" for i in ids])
    df = df.drop(columns="image")
    ctx.write_csv(df, "predictions")
    return dict(predictions=df, groups=groups, folder=folder, manifest=pr.m)


def settings_frame(m: dict) -> pd.DataFrame:
    """What the saved model set holds, per backbone: weights, tuned head, temperature, epochs."""
    rows = [dict(backbone=bb, weights=r["weights"]["kind"], learning_rate=f"{r['hp']['learning_rate']:.3g}",
                 weight_decay=f"{r['hp']['weight_decay']:.3g}", dropout=r["hp"]["dropout"],
                 temperature=f"{r['temperature']:.2f}", members_best_epoch=", ".join(map(str, r["best_epoch"])))
            for bb, r in m["backbones"].items()]
    return pd.DataFrame(rows)
