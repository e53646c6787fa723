"""Step 60: the claims table (the paper against our sum-rule fusion, both protocols), and the
weights and hyperparameters behind every number."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from allrep.data.splits import PROTOCOLS
from allrep.evaluate.claims import claims, split_facts
from allrep.evaluate.scores import random_weight_backbones
from allrep.train.backbones import weights_table
from allrep.train.tuning import hyperparameter_table

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def run(ctx: Context) -> dict:
    meta = ctx.read_all_json("meta")
    splits = pd.concat([ctx.read_csv("splits", dataset=ds, protocol=p).assign(dataset=ds)
                        for ds in ctx.cfg.datasets for p in PROTOCOLS], ignore_index=True)
    cl = claims(ctx.read_csv("scores"), ctx.cfg.verdict, random_weight_backbones(meta), split_facts(splits, ctx.cfg.verdict.icc))
    ctx.write_csv(cl, "claims")
    return dict(claims=cl, weights=weights_table(meta),
                hyperparameters=hyperparameter_table(ctx.read_all_csv("best")),
                summary=ctx.read_csv("summary"))


def claims_glue(cl: pd.DataFrame) -> dict:
    """Per claim, protocol and model set (``all``: the three-backbone fusion; ``pre``: the pretrained
    backbones only): k, n, accuracy, bounds, verdict and margin; the leakage share per protocol."""
    out = {}
    for _, r in cl.iterrows():
        tag = f"{r['dataset']}_{r['protocol']}" + ("" if r["model_set"] == "all backbones" else "_pre")
        out.update({f"claim_k_{tag}": int(r["n_correct"]), f"claim_n_{tag}": int(r["n_test"]),
                    f"claim_acc_{tag}": float(r["accuracy"]), f"claim_verdict_{tag}": r["verdict"],
                    f"claim_margin_{tag}": int(r["margin"]) if pd.notna(r["margin"]) else "none",
                    f"claim_low_{tag}": round(float(r["bound_low"]), 4), f"claim_high_{tag}": round(float(r["bound_high"]), 4),
                    f"claim_neff_{tag}": round(float(r["effective_n"]), 1), f"claim_splits_{tag}": int(r["repeats"])})
        if r["model_set"] == "all backbones":
            out[f"claim_leak_{r['dataset']}_{r['protocol']}"] = round(float(r["leakage"]), 4)
            out[f"claim_models_{r['dataset']}"] = r["models"]
    return out
