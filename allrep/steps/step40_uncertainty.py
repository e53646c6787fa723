"""Step 40: uncertainty of every ensemble on its test images, and calibration fitted on validation
only: a temperature per split and model (each backbone's ensemble and the sum-rule fusion), fitted on
the split's validation part, applied to its test part (:mod:`allrep.calibration`)."""
from __future__ import annotations

import pandas as pd

from .. import calibration as cal
from ..registry import Context
from ..uncertainty import ensemble_summaries


def run(ctx: Context) -> dict:
    cfg, u = ctx.cfg, ctx.cfg.uncertainty
    probs = ctx.read_all_csv("probabilities")
    summ = ensemble_summaries(probs, u.ece_bins, u.bootstrap, cfg.seed)
    ctx.write_csv(summ, "summary")
    test = cal.model_probabilities(probs, cfg.use_backbones)
    val = cal.model_probabilities(ctx.read_all_csv("validation"), cfg.use_backbones)
    scaled, temps = cal.calibrate(test, val)
    table = cal.calibration_table(scaled, u.ece_bins, u.bootstrap, cfg.seed)
    referral = cal.referral_curve(scaled)
    diversity = cal.diversity(probs)
    ctx.write_csv(table.round(6), "calibration")
    ctx.write_csv(temps.round(6), "temperatures")
    ctx.write_csv(referral.round(6), "referral")
    ctx.write_csv(diversity.round(6), "diversity")
    return dict(probabilities=probs, summary=summ, scaled=scaled, calibration=table, temperatures=temps,
                referral=referral, diversity=diversity)


def per_ensemble_means(summ: pd.DataFrame) -> pd.DataFrame:
    """Means over repeats per (dataset, protocol, backbone)."""
    return summ.groupby(["dataset", "protocol", "backbone"]).mean(numeric_only=True).drop(columns="repeat")


def calibration_view(table: pd.DataFrame) -> pd.DataFrame:
    """The calibration table as a person reads it: estimate [interval], before -> after, 3 decimals."""
    out = table[["dataset", "protocol", "model", "n", "errors", "T_median"]].copy()
    out["T_median"] = out["T_median"].map("{:.2f}".format)
    for m in ("ece", "nll", "brier"):
        for tag in ("before", "after"):
            out[f"{m} {tag}"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                                 zip(table[f"{m}_{tag}"], table[f"{m}_{tag}_low"], table[f"{m}_{tag}_high"])]
    out["AUROC errors"] = [("" if pd.isna(a) else f"{a:.3f}") for a in table["auroc_errors"]]
    return out


def calibration_glue(table: pd.DataFrame, referral: pd.DataFrame, coverage: float = 0.9) -> dict:
    """Numbers the book quotes: the fused model's ECE before and after scaling (pooled grouped), and the
    correct and kept predictions at the profile's referral coverage on the referral curve."""
    out = {}
    fused = table[(table["model"] == cal.FUSED) & (table["protocol"] == "grouped")]
    for r in fused.itertuples():
        for tag in ("before", "after"):
            out[f"ece_{tag}_{r.dataset}"] = round(float(getattr(r, f"ece_{tag}")), 4)
            out[f"ece_{tag}_low_{r.dataset}"] = round(float(getattr(r, f"ece_{tag}_low")), 4)
            out[f"ece_{tag}_high_{r.dataset}"] = round(float(getattr(r, f"ece_{tag}_high")), 4)
    for ds, g in referral.groupby("dataset"):
        at = g[g["coverage"] >= coverage - 1e-12].iloc[0]
        out[f"referral_k_{ds}"], out[f"referral_n_{ds}"] = int(at["correct"]), int(at["kept"])
    return out
