"""Figures the notebooks show (seaborn/matplotlib); each returns its figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import uncertainty as unc


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
            rel = unc.reliability(y, pm, bins)
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
