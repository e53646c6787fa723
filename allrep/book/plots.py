"""Figures the notebooks show (seaborn/matplotlib); each returns its figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from allrep.evaluate import uncertainty as unc
from allrep.evaluate.metrics import reliability_equal_mass, reliability_equal_width


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


def operating_characteristics_figure(oc: pd.DataFrame, design: pd.DataFrame):
    """Per dataset: P(each verdict) against the true accuracy (simulated), with the paper's figure and the
    margin below it marked."""
    datasets = list(dict.fromkeys(oc["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.8 * len(datasets), 2.9), squeeze=False, sharey=True)
    colours = {"p_reproduced": "tab:green", "p_inconclusive": "tab:grey", "p_not_reproduced": "tab:red"}
    for ax, ds in zip(axes[0], datasets):
        g, d = oc[oc["dataset"] == ds], design.set_index("dataset").loc[ds]
        for col, colour in colours.items():
            ax.plot(100 * g["true_accuracy"], g[col], color=colour, label=col[2:].replace("_", " "))
        ax.axvline(d["paper_accuracy"], color="k", lw=1, ls="--")
        ax.axvline(d["paper_accuracy"] - 100 * d["delta"], color="k", lw=1, ls=":")
        ax.axhline(0.8, color="k", lw=0.5, alpha=0.4)
        ax.set(title=f"{ds}: {int(d['outer_splits'])} splits, n_eff {d['effective_n']:.0f}", xlabel="true accuracy (%)",
               ylabel="probability" if ds == datasets[0] else "", ylim=(-0.02, 1.02))
    axes[0][0].legend(fontsize=7, loc="center left")
    fig.tight_layout()
    return fig


def claims_figure(claims: pd.DataFrame, scores: pd.DataFrame):
    """Per dataset: the paper's figure (red line) and the margin below it (dotted), and per protocol and
    fused model our pooled accuracy with the rule's one-sided bounds (bar), coloured by verdict; the
    grouped outer splits' accuracies as dots behind it."""
    datasets = list(dict.fromkeys(claims["dataset"]))
    colour = {"reproduced": "tab:green", "inconclusive": "tab:grey", "not reproduced": "tab:red"}
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.9 * len(datasets), 3.0), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        c = claims[claims["dataset"] == ds].reset_index(drop=True)
        paper = c["paper_accuracy"].iloc[0]
        ax.axhline(paper, color="tab:red", lw=1.5)
        ax.axhline(paper - 100 * c["delta"].iloc[0], color="tab:red", lw=1, ls=":")
        labels = []
        for x, r in c.iterrows():
            acc = 100 * scores[(scores["model"] == r["score_model"]) & (scores["dataset"] == ds)
                               & (scores["protocol"] == r["protocol"])]["accuracy"].to_numpy()
            jitter = np.random.default_rng(x).uniform(-0.15, 0.15, len(acc))
            ax.scatter(x + jitter, acc, s=8, color="tab:blue", alpha=0.35)
            a = 100 * r["accuracy"]
            ax.errorbar([x], [a], yerr=[[a - 100 * r["bound_low"]], [100 * r["bound_high"] - a]], fmt="s",
                        color=colour[r["verdict"]], capsize=3, ms=5)
            labels.append(f"{r['protocol']}\n{'all' if r['model_set'] == 'all backbones' else 'pretrained'}")
        ax.set(xticks=range(len(c)), xlim=(-0.5, len(c) - 0.5), title=ds, ylabel="accuracy (%)" if ds == datasets[0] else "")
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylim(bottom=max(80, ax.get_ylim()[0]), top=100.8)
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


def specification_curve(mv: pd.DataFrame, paper: dict, delta: float):
    """Per claim (column), the specification curve of the multiverse (allrep.evaluate.multiverse): on top every
    universe's pooled accuracy, sorted, coloured by verdict, the registered universe ringed, the paper's figure
    (red line) and the margin below it (dotted); below, which level of each factor each universe uses."""
    from allrep.evaluate.multiverse import FACTORS

    colour = {"reproduced": "tab:green", "inconclusive": "tab:grey", "not reproduced": "tab:red"}
    datasets = list(dict.fromkeys(mv["dataset"]))
    levels = {f: sorted(mv[f].astype(str).unique()) for f in FACTORS}
    rows = sum(len(v) for v in levels.values())
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.6 * len(datasets), 2.6 + 0.14 * rows), squeeze=False,
                             gridspec_kw=dict(height_ratios=[2.2, 0.14 * rows]), sharex="col")
    for j, ds in enumerate(datasets):
        d = mv[mv["dataset"] == ds].sort_values(["accuracy", "verdict", "universe"]).reset_index(drop=True)
        top, bottom = axes[0][j], axes[1][j]
        top.scatter(d.index, 100 * d["accuracy"], s=4, c=[colour[v] for v in d["verdict"]])
        reg = d[d["registered"]]
        top.scatter(reg.index, 100 * reg["accuracy"], s=60, facecolors="none", edgecolors="black", lw=1.2)
        top.axhline(paper[ds], color="tab:red", lw=1.2)
        top.axhline(paper[ds] - 100 * delta, color="tab:red", lw=1, ls=":")
        top.set(title=ds, ylabel="accuracy (%)" if j == 0 else "")
        y, ticks = 0, []
        for f in FACTORS:
            for lev in levels[f]:
                on = d.index[d[f].astype(str) == lev]
                bottom.scatter(on, np.full(len(on), y), s=1.5, marker="s", color="black")
                ticks.append(f"{f}: {lev}")
                y += 1
        bottom.set(yticks=range(len(ticks)), ylim=(len(ticks) - 0.5, -0.5), xlabel="universes, sorted by accuracy")
        bottom.set_yticklabels(ticks if j == 0 else [], fontsize=5)
    fig.tight_layout()
    return fig
