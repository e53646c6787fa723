"""Figures the notebooks show (seaborn/matplotlib); each returns its figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import uncertainty as unc
from .metrics import reliability_equal_mass, reliability_equal_width


def reliability_and_referral(ensembles: dict, protocol: str = "paper", bins: int = 10):
    """Per dataset: reliability diagram (equal-mass bins) and accuracy-rejection curve, one line per backbone."""
    keys = [k for k in ensembles if k[1] == protocol]
    datasets = sorted({k[0] for k in keys})
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.2 * len(datasets)), squeeze=False)
    colours = dict(zip(sorted({k[3] for k in keys}), sns.color_palette()))
    for row, ds in enumerate(datasets):
        for (d, p, r, bb) in keys:
            if d != ds:
                continue
            wide = ensembles[(d, p, r, bb)]
            y = wide.index.get_level_values("label").to_numpy()
            P = wide.to_numpy().T
            pm = P.mean(0)
            rel = reliability_equal_mass(y, pm, bins)
            axes[row, 0].plot(rel["confidence"], rel["accuracy"], marker="o", color=colours[bb],
                              label=bb if r == min(k[2] for k in keys) else None, alpha=0.8)
            rc = unc.rejection_curve(y, pm, unc.decompose(P)["predictive_entropy"])
            axes[row, 1].plot(rc["coverage"], rc["accuracy"], color=colours[bb], alpha=0.8)
        axes[row, 0].plot([0.5, 1], [0.5, 1], "k--", lw=1)
        axes[row, 0].set(xlabel="confidence", ylabel="accuracy", title=f"{ds}: reliability", ylim=(-0.02, 1.02))
        axes[row, 1].set(xlabel="coverage (most certain first)", ylabel="accuracy", title=f"{ds}: accuracy-rejection",
                         ylim=(-0.02, 1.02))
        axes[row, 1].invert_xaxis()
        axes[row, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def colour_boxes(colours: pd.DataFrame):
    g = sns.catplot(data=colours, x="channel", y="mean", hue="label", col="db", kind="box", height=3.2)
    return g.figure


def entropy_by_correctness(ent: pd.DataFrame):
    g = sns.displot(data=ent, x="entropy", hue="correct", col="protocol", row="dataset", height=2.4, aspect=1.6,
                    bins=np.linspace(0, np.log(2), 21))
    return g.figure


def learning_curves(curves: pd.DataFrame):
    """Training and validation accuracy per epoch of each from-scratch member, one panel per recipe."""
    long = curves.melt(id_vars=["dataset", "recipe", "protocol", "repeat", "member", "epoch"],
                       value_vars=["accuracy", "val_accuracy"], var_name="part", value_name="acc")
    long["split"] = long["protocol"] + " " + long["repeat"].astype(str)
    g = sns.relplot(data=long, x="epoch", y="acc", hue="split", style="part", col="recipe", row="dataset",
                    kind="line", height=2.8, aspect=1.3, units="member", estimator=None)
    g.set(ylim=(0.3, 1.02), ylabel="accuracy")
    return g.figure


def claims_figure(claims: pd.DataFrame, scores: pd.DataFrame, fused: str = "sum fusion, all backbones"):
    """Per dataset: the paper's figure (red line), our grouped single-split accuracies (dots), their
    prediction interval for one split (band), our mean with the corrected t interval, and the
    paper-protocol point with its exact interval."""
    datasets = list(dict.fromkeys(claims["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 2.8), squeeze=False, sharey=False)
    for ax, ds in zip(axes[0], datasets):
        c = claims[claims["dataset"] == ds].set_index("protocol")
        paper = c["paper_accuracy"].iloc[0]
        ax.axhline(paper, color="tab:red", lw=1.5, label="paper")
        if "grouped" in c.index:
            g = c.loc["grouped"]
            acc = 100 * scores[(scores["model"] == fused) & (scores["dataset"] == ds)
                               & (scores["protocol"] == "grouped")]["accuracy"].to_numpy()
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(acc))
            ax.axhspan(100 * g["ci_low"], 100 * g["ci_high"], xmin=0.05, xmax=0.45, color="tab:blue", alpha=0.12,
                       label="one split, 95% PI")
            ax.scatter(np.zeros(len(acc)) + jitter, acc, s=14, color="tab:blue", alpha=0.7, label="grouped splits")
            ax.errorbar([0.3], [100 * g["mean_over_repeats"]],
                        yerr=[[100 * (g["mean_over_repeats"] - g["mean_ci_low"])], [100 * (g["mean_ci_high"] - g["mean_over_repeats"])]],
                        fmt="s", color="navy", capsize=3, label="mean, corrected t")
        if "paper" in c.index:
            p = c.loc["paper"]
            ax.errorbar([1], [100 * p["accuracy"]], yerr=[[100 * (p["accuracy"] - p["ci_low"])], [100 * (p["ci_high"] - p["accuracy"])]],
                        fmt="o", color="tab:orange", capsize=3, label="paper split, exact CI")
        ax.set(xticks=[0, 1], xticklabels=["grouped", "paper split"], xlim=(-0.5, 1.5), title=ds,
               ylabel="accuracy (%)" if ds == datasets[0] else "")
        ax.set_ylim(top=100.8)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def calibration_figure(scaled: pd.DataFrame, referral: pd.DataFrame, bins: int = 10, model: str = "sum fusion"):
    """Per dataset (grouped protocol, test predictions pooled over repeats): the fused model's reliability
    diagram before and after temperature scaling (equal-width confidence bins, point size = images) and
    its referral curve (accuracy on the predictions kept when the least confident are referred)."""
    g0 = scaled[(scaled["model"] == model) & (scaled["protocol"] == "grouped")]
    datasets = sorted(g0["dataset"].unique())
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.6 * len(datasets), 6.2), squeeze=False)
    for j, ds in enumerate(datasets):
        g = g0[g0["dataset"] == ds]
        y = g["label"].to_numpy()
        ax = axes[0, j]
        for col, name, colour in (("p", "before", "tab:grey"), ("p_scaled", "after scaling", "tab:blue")):
            r = reliability_equal_width(y, g[col].to_numpy(), bins)
            c, a, n = r["confidence"], r["accuracy"], r["count"]
            ax.plot(c, a, "-", color=colour, alpha=0.6)
            ax.scatter(c, a, s=8 + 60 * n / n.max(), color=colour, label=name)
        ax.plot([0.5, 1], [0.5, 1], "k--", lw=1)
        ax.set(title=f"{ds}: reliability ({model})", xlabel="confidence", ylabel="accuracy" if j == 0 else "",
               xlim=(0.48, 1.02), ylim=(0.3, 1.02))
        ax.legend(fontsize=7, loc="lower right")
        r = referral[referral["dataset"] == ds]
        axes[1, j].plot(100 * r["coverage"], 100 * r["accuracy"], color="tab:blue")
        axes[1, j].set(title=f"{ds}: referral", xlabel="coverage (%)", ylabel="accuracy (%)" if j == 0 else "",
                       xlim=(101, 40))
    fig.tight_layout()
    return fig
