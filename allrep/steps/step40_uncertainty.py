"""Step 40: uncertainty of every ensemble on its test images, and calibration fitted on validation
only: a map per split and model (each backbone's ensemble and the sum-rule fusion), chosen and fitted on
the split's validation part (cross-fitted over its grouped folds), applied to its test part
(:mod:`allrep.evaluate.calibration`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from allrep.data.provenance import groups as committed_groups
from allrep.evaluate import calibration as cal
from allrep.evaluate.uncertainty import ensemble_summaries

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def run(ctx: Context) -> dict:
    cfg, u = ctx.cfg, ctx.cfg.uncertainty
    probs = ctx.read_all_csv("probabilities")
    summ = ensemble_summaries(probs, u.ece_bins, u.bootstrap, cfg.seed)
    ctx.write_csv(summ, "summary")
    test = cal.model_probabilities(probs, cfg.use_backbones)
    val = cal.model_probabilities(ctx.read_all_csv("validation"), cfg.use_backbones)
    scaled, temps = cal.calibrate(test, val, committed_groups(), u.calibration_folds, cfg.seed, u.temperature_prior_sd)
    table = cal.calibration_table(scaled, u.ece_bins, u.bootstrap, cfg.seed)
    referral = cal.referral_curve(scaled)
    fitted = cal.referral(scaled, val, temps, u.referral_coverage)
    diversity = cal.diversity(probs)
    ctx.write_csv(table.round(6), "calibration")
    ctx.write_csv(temps.round(6), "temperatures")
    ctx.write_csv(referral.round(6), "referral")
    ctx.write_csv(fitted.round(6), "referral_fitted")
    ctx.write_csv(diversity.round(6), "diversity")
    return dict(probabilities=probs, summary=summ, scaled=scaled, calibration=table, temperatures=temps,
                referral=referral, referral_fitted=fitted, diversity=diversity)


def per_ensemble_means(summ: pd.DataFrame) -> pd.DataFrame:
    """Means over repeats per (dataset, protocol, backbone)."""
    return summ.groupby(["dataset", "protocol", "backbone"]).mean(numeric_only=True).drop(columns="repeat")


def calibration_view(table: pd.DataFrame) -> pd.DataFrame:
    """The calibration table as a person reads it: before -> after with BCa intervals, 3 decimals; the
    degenerate fits and whether test NLL improved, beside each row."""
    out = table[["dataset", "protocol", "model", "n", "errors", "T_median", "T_degenerate"]].copy()
    out["T_median"] = out["T_median"].map("{:.2f}".format)
    out.insert(5, "maps chosen", [", ".join(f"{k} {int(r[f'map_{k}'])}" for k in cal.MAPS if r[f"map_{k}"])
                                  for _, r in table.iterrows()])
    for m in ("nll", "brier", "ece", "ece_mass"):
        for tag in ("before", "after"):
            out[f"{m} {tag}"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                                 zip(table[f"{m}_{tag}"], table[f"{m}_{tag}_low"], table[f"{m}_{tag}_high"])]
    for tag in ("before", "after"):
        out[f"AUROC errors {tag}"] = [("" if pd.isna(a) else f"{a:.3f}") for a in table[f"auroc_errors_{tag}"]]
    out["NLL, temperature everywhere"] = table["nll_temperature_only"].map("{:.3f}".format)
    out["NLL improved"] = table["nll_improved"].map({True: "yes", False: "no"})
    return out


def calibration_glue(table: pd.DataFrame, fitted: pd.DataFrame) -> dict:
    """Numbers the book quotes: for the fused model (grouped, pooled), NLL, ECE (equal-width and
    equal-mass), error-detection AUROC and the share of confidences above 0.99 before and after scaling,
    whether NLL improved, the degenerate temperatures; the validation-fitted referral's k/n."""
    out = {}
    fused = table[(table["model"] == cal.FUSED) & (table["protocol"] == "grouped")]
    for r in fused.itertuples():
        for tag in ("before", "after"):
            for m in ("nll", "ece", "ece_mass", "auroc_errors", "confident"):
                out[f"{m}_{tag}_{r.dataset}"] = round(float(getattr(r, f"{m}_{tag}")), 3)
        out[f"nll_improved_{r.dataset}"] = "improved" if r.nll_improved else "worsened"
        out[f"T_degenerate_{r.dataset}"] = int(r.T_degenerate)
        out[f"T_splits_{r.dataset}"] = int(r.repeats)
        out[f"nll_temperature_only_{r.dataset}"] = round(float(r.nll_temperature_only), 3)
        for k in cal.MAPS:
            out[f"map_{k}_{r.dataset}"] = int(getattr(r, f"map_{k}"))
    for r in fitted.itertuples():
        out[f"referral_k_{r.dataset}"], out[f"referral_n_{r.dataset}"] = int(r.correct), int(r.kept)
        out[f"referral_referred_{r.dataset}"], out[f"referral_referred_errors_{r.dataset}"] = int(r.referred), int(r.referred_errors)
    return out
