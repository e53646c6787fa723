"""The paper's claims against ours: one row per claim and protocol, from the score table."""
from __future__ import annotations

import pandas as pd

from .metrics import fraction, summarize_repeats, verdict, verdict_interval

PAPER_CLAIMS = {"IDB1": 100.0, "IDB2": 98.07, "combined": 98.64}  # the abstract's accuracies (%)
FUSED = "sum fusion, all backbones"


def claims(scores: pd.DataFrame, random_bb=()) -> pd.DataFrame:
    """One row per paper claim and protocol: our sum-rule fusion of all backbones against it.

    Paper protocol: one test set, exact k/n and its Clopper-Pearson interval.
    Grouped protocol: k/n pooled over the repeats is shown, but an image is tested in
    several repeats, so the verdict uses the mean accuracy over repeats and its t interval.
    Each row names the fused backbones that started from random weights (``random_bb``) and,
    where the scores hold them, the sum rule over the plain reference heads on the same splits."""
    from .scores import PLAIN_FUSION

    rows = []
    fused = scores[scores["model"] == FUSED]
    plain = scores[scores["model"] == PLAIN_FUSION]
    for ds, paper in PAPER_CLAIMS.items():
        part = fused[fused["dataset"] == ds]
        for protocol, pp in part.groupby("protocol", sort=False):
            k, n = int(pp["n_correct"].sum()), int(pp["n"].sum())
            rep = summarize_repeats(pp["accuracy"])
            f = fraction(k, n)
            if protocol == "paper":
                v = verdict(k, n, paper)
            else:
                v = verdict_interval(rep["mean"], rep["ci_low"], rep["ci_high"], paper)
            rows.append(dict(dataset=ds, protocol=protocol, repeats=len(pp), n_test=n, n_correct=k,
                             accuracy=k / n, acc_pct_truncated=f["pct_truncated"], acc_pct_rounded=f["pct_rounded"],
                             ci_low=f["ci_low"], ci_high=f["ci_high"], mean_over_repeats=rep["mean"],
                             sd_over_repeats=rep["sd"], mean_ci_low=rep["ci_low"], mean_ci_high=rep["ci_high"],
                             paper_accuracy=paper, verdict=v,
                             random_init_backbones=", ".join(sorted(random_bb)) or "none"))
            pl = plain[(plain["dataset"] == ds) & (plain["protocol"] == protocol)]
            if len(pl):
                rows[-1].update(plain_n_correct=int(pl["n_correct"].sum()),
                                plain_mean_over_repeats=float(pl["accuracy"].mean()))
    return pd.DataFrame(rows)


