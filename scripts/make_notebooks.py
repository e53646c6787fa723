"""Write the source notebooks in notebooks/ (no outputs) from the cell lists below.

    python scripts/make_notebooks.py

Every notebook follows one skeleton: title and purpose; a tagged, typed and
commented ``parameters`` cell (defaults: the smoke profile); setup; inputs;
steps; outputs; summary. Logic lives in ``allrep``; cells only call and show.
"""
from pathlib import Path

import nbformat as nbf

OUT = Path(__file__).resolve().parent.parent / "notebooks"
SETUP = """from allrep import repro
from allrep.config import load_profile
cfg = load_profile(profile)
env = repro.setup(int(cfg["seed"]))
import pandas as pd, seaborn as sns, matplotlib.pyplot as plt
from myst_nb import glue
from allrep import experiment as ex, report
sns.set_theme(style="whitegrid")
pd.set_option("display.width", 160, "display.max_columns", 30)
print(f"profile {cfg.name}; keras backend {env['backend']}; commit {env['commit']}")"""


def md(s):
    return nbf.v4.new_markdown_cell(s.strip())


def code(s, tags=()):
    c = nbf.v4.new_code_cell(s.strip())
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def params(s):
    return code(s, tags=("parameters",))


NOTEBOOKS = {
    "10_data_exploration": [
        md("""# Data exploration and shortcut audit

**Purpose.** Describe ALL-IDB as it is on disk: classes, image sizes and cameras, colour, duplicates,
where every ALL-IDB2 crop comes from, and the cues other than cells (image size, drawn arrows) that a
classifier could exploit. Every later split and every baseline in the results builds on these facts."""),
        params("""profile: str = "smoke"      # profile name (profiles/<name>.yaml)
dataset: str = "combined"   # IDB1, IDB2 or combined: which images the class and colour views describe"""),
        md("## Setup"),
        code(SETUP + "\nfrom allrep import audit, data, provenance\nfrom allrep.data import manifest"),
        md("## Inputs\nThe committed manifest (no pixels) and the data folder, verified against it."),
        code("""# NBVAL_CHECK_OUTPUT  (nbval regression: class counts are fixed)
root = data.require_verified(quick=True)
items = manifest(dataset)
counts = pd.DataFrame([dict(db=it.db, label="ALL" if it.label else "healthy") for it in manifest("combined")])
counts = counts.groupby(["db", "label"]).size().unstack()
glue("n_images", len(manifest("combined")), display=False)
counts"""),
        md("## Image sizes and cameras\nALL-IDB1 comes from two cameras; one of them photographed only ALL patients."),
        code("""# NBVAL_CHECK_OUTPUT  (image sizes per camera are fixed)
sizes = audit.size_table("combined")
glue("n_size_1712", int(sizes.query("size == '1712x1368'")["images"].sum()), display=False)
sizes"""),
        md("## Sample images\nThumbnails recreate licensed images, so the committed (paper-profile) book omits them."),
        code("""if cfg.get("show_images", False):
    import numpy as np
    fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
    for row, label in enumerate((1, 0)):
        chosen = [it for it in items if it.label == label][:6]
        for ax, it in zip(axes[row], chosen):
            ax.imshow(data.load_image(it, 128, root)); ax.set_title(it.id, fontsize=7); ax.axis("off")
    plt.show()
else:
    print("sample grid omitted (licence): set show_images: true in a scratch profile to view it")"""),
        md("## Colour statistics\nMean RGB of each image at 64x64, by class and database."),
        code("""from allrep import plots
plots.colour_boxes(audit.colour_table(items, root))
plt.show()"""),
        md("## Duplicates, crops and overlapping photographs"),
        code("""dups = audit.duplicates()
prov = pd.DataFrame(provenance.provenance())
per_parent = audit.crops_per_parent()
ov = audit.overlap_table()
glue("n_crops_located", int((prov["parent"] != "").sum()), display=False)
glue("n_parents", int(per_parent["parent"].nunique()), display=False)
glue("n_overlap_pairs", len(ov) - len(dups.query("`byte-identical files`.str.startswith('IDB1')")), display=False)
glue("n_groups", len(set(provenance.groups().values())), display=False)
display(dups)
ax = sns.histplot(per_parent["crops"], discrete=True); ax.set(xlabel="ALL-IDB2 crops cut from one ALL-IDB1 photograph")
plt.show()
ov"""),
        md("## Splits and leakage\nHow many test images share a photograph group with training images, per protocol."),
        code("""# NBVAL_CHECK_OUTPUT  (split sizes and leakage follow from the seed)
frames = {(d, p): ex.splits(cfg, d, p) for d in cfg["datasets"] for p in ("paper", "grouped")}
leak = audit.leakage_table(frames).round(4)
for _, r in leak.iterrows():
    glue(f"leak_{r['dataset']}_{r['protocol']}", r["fraction"], display=False)
leak"""),
        md("## Shortcut audit\nA depth-2 tree that sees only width and height, and drawn yellow arrows."),
        code("""short = pd.concat([report.size_only_baseline(cfg, d) for d in cfg["datasets"]]
                  + [report.majority_baseline(cfg, d) for d in cfg["datasets"]])
short_sum = report.summarize(short)
from allrep.io import atomic_write_csv
atomic_write_csv(short, ex.output_dir(cfg) / "data" / "shortcut_baselines.csv")
for _, r in short_sum.iterrows():
    glue(f"short_{r['model'].split()[0]}_{r['dataset']}_{r['protocol']}", r["accuracy"], display=False)
short_sum[["dataset", "protocol", "model", "k", "n", "accuracy", "mean", "ci_low", "ci_high"]]"""),
        code("""arrows = audit.arrow_table(root)
glue("n_arrows", int(arrows["arrow"].sum()), display=False)
arrows[arrows["arrow"]].reset_index(drop=True)"""),
        md("""## Summary
The counts above come from the images: every crop's parent photograph, the duplicate files, the
overlapping fields and the size and arrow cues. The grouped protocol keeps each group on one side;
the paper protocol does not, and the leakage table says how much that matters."""),
    ],
    "20_tuning": [
        md("""# Bayesian tuning of one hybrid

**Purpose.** Tune the GRU head of one backbone on one dataset with keras-tuner's
`BayesianOptimization`. The objective is the validation loss on the validation part carved from the
paper split's training images; the test images are never used."""),
        params("""profile: str = "smoke"        # profile name
backbone: str = "mobilenetv2"  # inceptionv3, efficientnetb3 or mobilenetv2
dataset: str = "IDB2"          # IDB1, IDB2 or combined"""),
        md("## Setup"),
        code(SETUP + "\nfrom allrep import tuning"),
        md("## Inputs\nThe weights this backbone starts from, and the search space (one place: `allrep.tuning`)."),
        code("""w = ex.weights_for(cfg, backbone)
print(f"{backbone}: {w.kind}, {w.source}, input {w.input_size}, preprocessing {w.preprocess}")
pd.Series(tuning.SEARCH_SPACE_DOC, name="search space").to_frame()"""),
        md("## Search"),
        code("""res = ex.run_tuning(cfg, backbone, dataset)
trials = res["trials"].sort_values("val_loss")
glue(f"tune_best_val_loss_{backbone}_{dataset}", float(trials["val_loss"].min()), display=False)
trials"""),
        md("## Outputs"),
        code("""pd.Series(res["best"], name=f"best for {backbone} on {dataset}").to_frame()"""),
        md("""## Summary
The best hyperparameters are written to `tuning/best_hyperparameters.csv`, which the ensemble step reads.
The grouped protocol reuses them (they were chosen on the paper split: a small optimism, stated in the book)."""),
    ],
    "30_ensemble": [
        md("""# Deep-ensemble training of one hybrid

**Purpose.** Train the members of one backbone's deep ensemble on one dataset, for the paper split and
for every grouped repeat: same tuned head, different seeds (initialisation and data order). Early
stopping uses the validation part of the training split only. Members are cached one by one, so a
killed run resumes."""),
        params("""profile: str = "smoke"        # profile name
backbone: str = "mobilenetv2"  # inceptionv3, efficientnetb3 or mobilenetv2
dataset: str = "IDB2"          # IDB1, IDB2 or combined"""),
        md("## Setup"),
        code(SETUP),
        md("## Training"),
        code("""res = ex.run_ensemble(cfg, backbone, dataset)
print(f"members trained {res['members_trained']}, reused {res['members_reused']}; "
      f"weights: {res['weights']['kind']} ({res['weights']['source']}); head: {res['hp_source']}")
res["members"].groupby("protocol")[["epochs_run", "best_epoch", "train_seconds"]].describe().round(1)"""),
        md("## Outputs\nAccuracy of the ensemble mean on each split's test images (the full analysis is in the results chapter)."),
        code("""acc = report.ensemble_accuracy(res["probabilities"])
glue(f"ens_paper_k_{backbone}_{dataset}", int(acc.query("protocol == 'paper'")["correct"].iloc[0]), display=False)
acc"""),
        md("""## Summary
Per-member, per-image test probabilities are in `probabilities/<dataset>_<backbone>.csv`, with the
weights and hyperparameters used in the `.json` beside them."""),
    ],
    "35_scratch": [
        md("""# EfficientNetB3 from random initialisation

**Purpose.** No EfficientNetB3 ImageNet file exists offline, so the run's EfficientNetB3 ensembles use
frozen *random* features. Here the whole EfficientNetB3-GRU hybrid trains end to end from random
weights under two recipes, the naive one (Adam at a constant rate, no augmentation, Keras' BatchNorm
momentum) and ours (online dihedral and colour augmentation, AdamW with warm-up and cosine decay, label
smoothing, BatchNorm momentum 0.9), on the same splits as the ensembles, and the sum rule is compared
without EfficientNetB3, with its frozen random features, and with each from-scratch model."""),
        params("""profile: str = "smoke"  # profile name (profiles/<name>.yaml); the settings are under `scratch:`"""),
        md("## Setup"),
        code(SETUP + "\nfrom allrep.io import atomic_write_csv"),
        md("## Inputs\nThe recipes and the splits (the paper split, then the first grouped repeats)."),
        code("""from allrep.scratch import Recipe
sc = cfg["scratch"]
print(f"backbone {sc['backbone']}, input {sc['input_size']} px, datasets {sc['datasets']}, "
      f"paper split + {sc['repeats']} grouped split(s), {sc['members']} member(s) per recipe and split")
pd.DataFrame({name: Recipe.from_dict(r).to_dict() for name, r in sc["recipes"].items()}).T"""),
        md("## Training (cached per member)"),
        code("""runs = {ds: ex.run_scratch(cfg, ds) for ds in sc["datasets"]}
members = pd.concat([r["members"].assign(dataset=ds) for ds, r in runs.items()], ignore_index=True)
glue("scratch_input_size", int(sc["input_size"]), display=False)
glue("scratch_seconds", round(float(members["train_seconds"].sum())), display=False)
members"""),
        md("## Each recipe alone, and the sum rule with and without EfficientNetB3"),
        code("""table = pd.concat([report.scratch_fusion_table(cfg, ds) for ds in sc["datasets"]], ignore_index=True)
summary = report.summarize(table)
atomic_write_csv(summary, ex.output_dir(cfg) / "fusion" / "scratch_summary.csv")
for key, value in report.scratch_glue(table).items():
    glue(key, value, display=False)
summary.drop(columns=["auc"]).round(4)"""),
        md("## Learning curves of the from-scratch members"),
        code("""from allrep import plots
curves = pd.concat([r["curves"].assign(dataset=ds) for ds, r in runs.items()], ignore_index=True)
plots.learning_curves(curves)
plt.show()"""),
        md("""## Summary
The from-scratch rows say whether a recipe learned anything (chance is about 50%); the fusion rows say
what adding an EfficientNetB3 does to the sum rule on the same test images."""),
    ],
    "40_uncertainty": [
        md("""# Uncertainty and calibration

**Purpose.** What the deep ensembles say about their own reliability: predictive entropy, its
aleatoric and epistemic parts, member spread, calibration (NLL, Brier, ECE with a bootstrap CI),
reliability diagrams, and the accuracy when the most uncertain images are referred."""),
        params("""profile: str = "smoke"  # profile name"""),
        md("## Setup"),
        code(SETUP + "\nfrom allrep import plots\nfrom allrep.io import atomic_write_csv"),
        md("## Inputs\nPer-member test probabilities; one ensemble = one backbone on one split."),
        code("""probs = ex.load_probabilities(cfg)
ens = report.ensembles(probs)
print(f"{len(ens)} ensembles, {probs['member'].nunique()} members each")"""),
        md("## Summary measures\nMeans over repeats for the grouped protocol. `auroc_*`: how well each uncertainty flags the ensemble's errors (0.5 = not at all)."),
        code("""summ = report.uncertainty_summary(cfg, probs)
atomic_write_csv(summ, ex.output_dir(cfg) / "uncertainty" / "summary.csv")
summ.groupby(["dataset", "protocol", "backbone"]).mean(numeric_only=True).drop(columns="repeat").round(3)"""),
        md("## Reliability and referral (paper protocol)"),
        code("""plots.reliability_and_referral(ens, "paper", cfg["uncertainty"]["ece_bins"])
plt.show()"""),
        md("## Entropy of correct and wrong decisions"),
        code("""ent = report.entropy_frame(probs)
glue("mean_mi_paper", float(ent.query("protocol == 'paper'")["mutual_information"].mean()), display=False)
plots.entropy_by_correctness(ent)
plt.show()"""),
        md("""## Summary
Uncertainty is only useful if it separates errors from correct calls: the AUROC columns say how well
each measure does, and the referral curve what accuracy is left when the most uncertain images go to a human."""),
    ],
    "50_fusion": [
        md("""# Sum-rule fusion and ablations

**Purpose.** Fuse the three backbones' ensemble-mean scores with the paper's sum rule, and compare it
with product, max and majority vote, with each backbone alone, each single member, with and without
the backbone that had no pretrained weights, and with the shortcut baselines."""),
        params("""profile: str = "smoke"  # profile name"""),
        md("## Setup"),
        code(SETUP + "\nfrom allrep.io import atomic_write_csv"),
        md("## Scores of every model on every split"),
        code("""scores = report.score_table(cfg)
atomic_write_csv(scores, ex.output_dir(cfg) / "fusion" / "scores.csv")
summary = report.summarize(scores)
atomic_write_csv(summary, ex.output_dir(cfg) / "fusion" / "summary.csv")
summary[~summary["model"].str.contains("member")].round(4)"""),
        md("## Baselines next to the models"),
        code("""base = pd.read_csv(ex.output_dir(cfg) / "data" / "shortcut_baselines.csv")
bsum = report.summarize(base)
atomic_write_csv(bsum, ex.output_dir(cfg) / "fusion" / "baselines.csv")
bsum.round(4)"""),
        md("## Ablation plot (grouped protocol)"),
        code("""g = summary[(summary["protocol"] == "grouped") & ~summary["model"].str.contains("member")]
g = pd.concat([g, bsum[bsum["protocol"] == "grouped"]])
ax = sns.pointplot(data=g, y="model", x="mean", hue="dataset", linestyle="none", dodge=0.4)
ax.set(xlabel="mean test accuracy over grouped splits", ylabel=""); plt.show()"""),
        md("""## Summary
The sum rule is only as good as the scores it adds: the table shows each backbone alone and each
fusion rule on the same splits, so the gain (or loss) of fusion can be read directly."""),
    ],
    "60_results": [
        md("""# Results: claims, protocols and baselines

**Purpose.** Put our numbers next to the paper's: the sum-rule fusion of the three hybrids under the
paper protocol (one 80/20 hold-out) and under grouped repeated splits, as exact k/n with 95% intervals,
and a verdict by the rule stated below."""),
        params("""profile: str = "smoke"  # profile name"""),
        md("## Setup"),
        code(SETUP + "\nfrom allrep.io import atomic_write_csv"),
        md("## Claims\nVerdict rule: *reproduced* if the paper's accuracy is inside our 95% Clopper-Pearson interval and within 2 points of our estimate; *not reproduced* if outside the interval; else *inconclusive*."),
        code("""scores = pd.read_csv(ex.output_dir(cfg) / "fusion" / "scores.csv")
cl = report.claims(cfg, scores)
atomic_write_csv(cl, ex.output_dir(cfg) / "claims.csv")
for _, r in cl.iterrows():
    tag = f"{r['dataset']}_{r['protocol']}"
    glue(f"claim_k_{tag}", int(r["n_correct"]), display=False)
    glue(f"claim_n_{tag}", int(r["n_test"]), display=False)
    glue(f"claim_acc_{tag}", float(r["accuracy"]), display=False)
    glue(f"claim_verdict_{tag}", r["verdict"], display=False)
cl"""),
        md("## Weights and hyperparameters behind every number"),
        code("""ex.weights_table(cfg)"""),
        code("""pd.read_csv(ex.output_dir(cfg) / "tuning" / "best_hyperparameters.csv") if (ex.output_dir(cfg) / "tuning" / "best_hyperparameters.csv").is_file() else "no tuning results\""""),
        md("## Every model, both protocols"),
        code("""summary = pd.read_csv(ex.output_dir(cfg) / "fusion" / "summary.csv")
summary[~summary["model"].str.contains("member")].round(4)"""),
        md("""## Summary
`claims.csv` holds one row per claim and protocol; the introduction of the book shows it."""),
    ],
}


def main():
    OUT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.cells = cells
        for i, c in enumerate(nb.cells):  # stable ids: regenerating leaves unchanged notebooks byte-identical
            c["id"] = f"{name[:2]}-{i:02d}"
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbf.write(nb, OUT / f"{name}.ipynb")
    print(f"wrote {len(NOTEBOOKS)} notebooks to {OUT}")


if __name__ == "__main__":
    main()
