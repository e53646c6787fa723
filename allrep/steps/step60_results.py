"""Step 60: the claims table (the paper against our sum-rule fusion, both protocols), and the
weights and hyperparameters behind every number."""
from __future__ import annotations

import pandas as pd

from ..claims import claims, split_facts
from ..registry import PROTOCOLS, Context
from ..scores import random_weight_backbones
from ..tables import hyperparameter_table, weights_table


def run(ctx: Context) -> dict:
    meta = ctx.read_all_json("meta")
    splits = pd.concat([ctx.read_csv("splits", dataset=ds, protocol=p).assign(dataset=ds)
                        for ds in ctx.cfg.datasets for p in PROTOCOLS], ignore_index=True)
    cl = claims(ctx.read_csv("scores"), random_weight_backbones(meta), split_facts(splits))
    ctx.write_csv(cl, "claims")
    return dict(claims=cl, weights=weights_table(meta),
                hyperparameters=hyperparameter_table(ctx.read_all_csv("best")),
                summary=ctx.read_csv("summary"))


def claims_glue(cl: pd.DataFrame) -> dict:
    out = {}
    for _, r in cl.iterrows():
        tag = f"{r['dataset']}_{r['protocol']}"
        out.update({f"claim_k_{tag}": int(r["n_correct"]), f"claim_n_{tag}": int(r["n_test"]),
                    f"claim_acc_{tag}": float(r["accuracy"]), f"claim_verdict_{tag}": r["verdict"],
                    f"claim_margin_{tag}": int(r["margin"]) if pd.notna(r["margin"]) else "none",
                    f"claim_low_{tag}": round(float(r["ci_low"]), 4), f"claim_high_{tag}": round(float(r["ci_high"]), 4)})
        if r["protocol"] == "paper":
            out[f"claim_leak_{tag}"] = round(float(r["leakage"]), 4)
        else:
            out.update({f"claim_mean_{tag}": round(float(r["mean_over_repeats"]), 4),
                        f"claim_mean_low_{tag}": round(float(r["mean_ci_low"]), 4),
                        f"claim_mean_high_{tag}": round(float(r["mean_ci_high"]), 4),
                        f"claim_reach_{tag}": int(r["reach_paper"]), f"claim_repeats_{tag}": int(r["repeats"])})
    return out
