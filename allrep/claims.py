"""The paper's claims against ours: one row per claim and protocol, from the score table.

The verdict rule is written once, here and in :mod:`allrep.metrics`, and the book quotes it:

* **paper protocol** (one test set, like the paper's): the paper's figure against our exact k/n and
  its Clopper-Pearson interval; *reproduced* when the figure lies inside the interval and our
  estimate is within 2 points of it, *not reproduced* when outside, otherwise *inconclusive*. The
  row carries its leakage share (test images whose photograph group also has training images).
* **grouped protocol** (repeated splits with no group across train and test): the paper reports one
  split, so its figure is set against what one of our splits could show: the prediction interval
  for one split, and how many of our repeats reach the figure; the mean over repeats is given with
  the corrected resampled t interval of Nadeau and Bengio (2003), since the splits' training sets
  overlap. Same three verdicts, with the prediction interval in place of the exact one.
* every verdict has a **margin**: how many test predictions would have to change to flip it
  (:func:`allrep.metrics.verdict_margin`).
"""
from __future__ import annotations

import pandas as pd

from .metrics import corrected_repeats, fraction, verdict, verdict_margin, verdict_repeats

PAPER_CLAIMS = {"IDB1": 100.0, "IDB2": 98.07, "combined": 98.64}  # the abstract's accuracies (%)
FUSED = "sum fusion, all backbones"


def split_facts(splits: pd.DataFrame) -> dict:
    """Per (dataset, protocol): mean training-part size (train and validation roles) and the share of
    test images whose group also has training images, pooled over the repeats."""
    from .splits import leakage

    out = {}
    for (ds, protocol), g in splits.groupby(["dataset", "protocol"]):
        n_train, k, n = [], 0, 0
        for _, s in g.groupby("repeat"):
            n_train.append(int((s["role"] != "test").sum()))
            lk = leakage(s)
            k, n = k + lk["n_test_group_in_train"], n + lk["n_test"]
        out[(ds, protocol)] = dict(n_train=sum(n_train) / len(n_train), leaked=k, n_test=n)
    return out


def claims(scores: pd.DataFrame, random_bb=(), facts: dict | None = None) -> pd.DataFrame:
    """One row per paper claim and protocol: our sum-rule fusion of all backbones against it (rule in
    the module doc). ``facts``: :func:`split_facts` (training sizes and leakage). Each row names the fused
    backbones that started from random weights and, where the scores hold them, the sum rule over the
    plain reference heads on the same splits."""
    from .scores import PLAIN_FUSION

    rows = []
    fused = scores[scores["model"] == FUSED]
    plain = scores[scores["model"] == PLAIN_FUSION]
    for ds, paper in PAPER_CLAIMS.items():
        part = fused[fused["dataset"] == ds]
        for protocol, pp in part.groupby("protocol", sort=False):
            pp = pp.sort_values("repeat")
            ks, ns = pp["n_correct"].astype(int).tolist(), pp["n"].astype(int).tolist()
            k, n = sum(ks), sum(ns)
            fact = (facts or {}).get((ds, protocol), {})
            n_train = fact.get("n_train", float("nan"))
            f = fraction(k, n)
            row = dict(dataset=ds, protocol=protocol, repeats=len(pp), n_test=n, n_correct=k, accuracy=k / n,
                       acc_pct_truncated=f["pct_truncated"], acc_pct_rounded=f["pct_rounded"],
                       paper_accuracy=paper, reach_paper=int(sum(a >= paper / 100 - 1e-12 for a in pp["accuracy"])))
            if protocol == "paper":
                def rule(kk, n=n, paper=paper):
                    return verdict(kk[0], n, paper)
                row.update(ci_low=f["ci_low"], ci_high=f["ci_high"], interval="Clopper-Pearson 95%")
            else:
                def rule(kk, ns=ns, n_train=n_train, paper=paper):
                    return verdict_repeats(kk, ns, n_train, paper)
                r = corrected_repeats(pp["accuracy"], n / len(pp), n_train)
                row.update(mean_over_repeats=r["mean"], sd_over_repeats=r["sd"], mean_ci_low=r["ci_low"],
                           mean_ci_high=r["ci_high"], ci_low=r["pi_low"], ci_high=r["pi_high"],
                           interval="prediction interval for one split, 95%")
            row.update(verdict=rule(ks), margin=verdict_margin(ks, ns, rule),
                       leakage=fact["leaked"] / fact["n_test"] if fact else float("nan"),
                       random_init_backbones=", ".join(sorted(random_bb)) or "none")
            pl = plain[(plain["dataset"] == ds) & (plain["protocol"] == protocol)]
            if len(pl):
                row.update(plain_n_correct=int(pl["n_correct"].sum()), plain_mean_over_repeats=float(pl["accuracy"].mean()))
            rows.append(row)
    return pd.DataFrame(rows)
