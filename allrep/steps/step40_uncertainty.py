"""Step 40: uncertainty and calibration of every ensemble on its test images."""
from __future__ import annotations

import pandas as pd

from ..registry import Context
from ..uncertainty import ensemble_summaries


def run(ctx: Context) -> dict:
    probs = ctx.read_all_csv("probabilities")
    u = ctx.cfg.uncertainty
    summ = ensemble_summaries(probs, u.ece_bins, u.bootstrap, ctx.cfg.seed)
    ctx.write_csv(summ, "summary")
    return dict(probabilities=probs, summary=summ)


def per_ensemble_means(summ: pd.DataFrame) -> pd.DataFrame:
    """Means over repeats per (dataset, protocol, backbone)."""
    return summ.groupby(["dataset", "protocol", "backbone"]).mean(numeric_only=True).drop(columns="repeat")
