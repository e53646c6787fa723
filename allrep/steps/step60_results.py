"""Step 60: the claims table (the paper against our sum-rule fusion, both protocols), and the
weights and hyperparameters behind every number."""
from __future__ import annotations

import pandas as pd

from ..claims import claims
from ..registry import Context
from ..scores import random_weight_backbones
from ..tables import hyperparameter_table, weights_table


def run(ctx: Context) -> dict:
    meta = ctx.read_all_json("meta")
    cl = claims(ctx.read_csv("scores"), random_weight_backbones(meta))
    ctx.write_csv(cl, "claims")
    return dict(claims=cl, weights=weights_table(meta),
                hyperparameters=hyperparameter_table(ctx.read_all_json("best")),
                summary=ctx.read_csv("summary"))


def claims_glue(cl: pd.DataFrame) -> dict:
    out = {}
    for _, r in cl.iterrows():
        tag = f"{r['dataset']}_{r['protocol']}"
        out.update({f"claim_k_{tag}": int(r["n_correct"]), f"claim_n_{tag}": int(r["n_test"]),
                    f"claim_acc_{tag}": float(r["accuracy"]), f"claim_verdict_{tag}": r["verdict"]})
    return out
