"""Results: ensemble means, fusion ablations, claims, shortcut baselines, book tables.

Reads only results files (per-member probabilities, splits), so it runs on any
CPU without the images or a GPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config
from .data import manifest
from .experiment import load_probabilities, output_dir, splits, weights_table
from .fusion import fuse
from .io import atomic_write_text
from .metrics import binary_metrics, fraction, summarize_repeats, verdict, verdict_interval

PAPER_CLAIMS = {"IDB1": 100.0, "IDB2": 98.07, "combined": 98.64}  # the abstract's accuracies (%)
KEYS = ["protocol", "repeat", "dataset"]


# ----------------------------------------------------------------------------- ensembles and fusion
def ensemble_means(probs: pd.DataFrame) -> pd.DataFrame:
    """Mean p(ALL) over members: one row per (protocol, repeat, dataset, backbone, image)."""
    return (probs.groupby(KEYS + ["backbone", "id", "label"], sort=True)["p_all"].mean().reset_index())


def ensembles(probs: pd.DataFrame) -> dict:
    """(dataset, protocol, repeat, backbone) -> images x members table of p(ALL)."""
    return {k: g.pivot(index=["id", "label"], columns="member", values="p_all")
            for k, g in probs.groupby(["dataset", "protocol", "repeat", "backbone"], sort=True)}


def uncertainty_summary(cfg: Config, probs: pd.DataFrame) -> pd.DataFrame:
    """Every scalar uncertainty/calibration measure of every ensemble on its test images."""
    from . import uncertainty as unc

    u = cfg["uncertainty"]
    rows = []
    for (ds, protocol, r, bb), wide in ensembles(probs).items():
        y = wide.index.get_level_values("label").to_numpy()
        rows.append(dict(dataset=ds, protocol=protocol, repeat=r, backbone=bb,
                         **unc.summary(y, wide.to_numpy().T, u["ece_bins"], u["bootstrap"], int(cfg["seed"]))))
    return pd.DataFrame(rows)


def entropy_frame(probs: pd.DataFrame) -> pd.DataFrame:
    """Per test image and ensemble: predictive entropy, mutual information, and whether it was right."""
    from . import uncertainty as unc

    rows = []
    for (ds, protocol, r, bb), wide in ensembles(probs).items():
        y = wide.index.get_level_values("label").to_numpy()
        d = unc.decompose(wide.to_numpy().T)
        rows.append(pd.DataFrame(dict(dataset=ds, protocol=protocol, backbone=bb, entropy=d["predictive_entropy"],
                                      mutual_information=d["mutual_information"],
                                      correct=(d["p_mean"] > 0.5) == (y == 1))))
    return pd.concat(rows, ignore_index=True)


def ensemble_accuracy(probs: pd.DataFrame) -> pd.DataFrame:
    """Correct / n of each ensemble mean, per protocol and repeat."""
    m = ensemble_means(probs)
    m = m.assign(correct=(m["p_all"] > 0.5) == (m["label"] == 1))
    return m.groupby(["protocol", "repeat"])["correct"].agg(correct="sum", n="count").reset_index()


def random_weight_backbones(cfg: Config) -> list[str]:
    wt = weights_table(cfg)
    return sorted(set(wt.loc[wt["weights"] == "random", "backbone"])) if len(wt) else []


def score_table(cfg: Config, probs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy etc. of every single member, backbone ensemble and fusion rule, per split."""
    probs = load_probabilities(cfg) if probs is None else probs
    means = ensemble_means(probs)
    rows = []
    random_bb = random_weight_backbones(cfg)
    for key, part in probs.groupby(KEYS + ["backbone", "member"], sort=True):
        rows.append(dict(zip(KEYS, key[:3]), model=f"{key[3]} member {key[4]}", kind="member",
                         **binary_metrics(part["label"], part["p_all"])))
    for key, part in means.groupby(KEYS, sort=True):
        wide = part.pivot(index=["id", "label"], columns="backbone", values="p_all")
        y = wide.index.get_level_values("label").to_numpy()
        for bb in wide.columns:
            rows.append(dict(zip(KEYS, key), model=f"{bb} ensemble", kind="backbone", **binary_metrics(y, wide[bb])))
        sets = {"all backbones": list(wide.columns)}
        pretrained = [b for b in wide.columns if b not in random_bb]
        if random_bb and len(pretrained) >= 2 and len(pretrained) < len(wide.columns):
            sets[f"without {', '.join(random_bb)} (random init)"] = pretrained
        for set_name, cols in sets.items():
            for rule in cfg["fusion"]["rules"]:
                p = fuse(wide[cols].to_numpy().T, rule)
                rows.append(dict(zip(KEYS, key), model=f"{rule} fusion, {set_name}", kind="fusion",
                                 **binary_metrics(y, p)))
    return pd.DataFrame(rows)


def load_scratch(cfg: Config, dataset: str | None = None) -> pd.DataFrame:
    """Per-member test probabilities of the from-scratch runs (empty before the scratch step)."""
    folder = output_dir(cfg) / "scratch"
    frames = [pd.read_csv(p) for p in sorted(folder.glob("*.csv")) if not p.stem.endswith("_members")]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df[df["dataset"] == dataset] if len(df) and dataset else df


def scratch_fusion_table(cfg: Config, dataset: str, probs: pd.DataFrame | None = None,
                         scratch: pd.DataFrame | None = None, random_bb=None) -> pd.DataFrame:
    """On the splits that have from-scratch members: each from-scratch recipe alone, the run's
    random-feature backbone alone, and the sum rule over the pretrained backbones without it,
    with it (as the run fused it) and with each from-scratch recipe in its place. Paired: the
    same test images in every row of a split."""
    probs = load_probabilities(cfg, datasets=[dataset]) if probs is None else probs
    scratch = load_scratch(cfg, dataset) if scratch is None else scratch
    if not len(scratch):
        return pd.DataFrame()
    means = ensemble_means(probs)
    random_bb = set(random_weight_backbones(cfg) if random_bb is None else random_bb)
    rows = []
    for (protocol, r), sc in scratch.groupby(["protocol", "repeat"], sort=True):
        part = means[(means["protocol"] == protocol) & (means["repeat"] == r)]
        wide = part.pivot(index=["id", "label"], columns="backbone", values="p_all")
        sc_wide = sc.groupby(["id", "label", "recipe"])["p_all"].mean().unstack("recipe")
        wide = wide.join(sc_wide, how="inner")
        assert len(wide) == len(sc_wide) == len(part) / part["backbone"].nunique(), "scratch split != ensemble split"
        y = wide.index.get_level_values("label").to_numpy()
        key = dict(protocol=protocol, repeat=int(r), dataset=dataset)
        bbs = [b for b in part["backbone"].unique()]
        pretrained = sorted(b for b in bbs if b not in random_bb)
        rnd = sorted(b for b in bbs if b in random_bb)
        for name in sc_wide.columns:
            rows.append(dict(key, model=f"from scratch ({name}) alone", recipe=name, **binary_metrics(y, wide[name])))
        for b in rnd:
            rows.append(dict(key, model=f"{b} frozen random features alone", **binary_metrics(y, wide[b])))
        sets = {f"sum fusion, {' + '.join(pretrained)}": pretrained}
        for b in rnd:
            sets[f"sum fusion, + {b} frozen random features"] = pretrained + [b]
        for name in sc_wide.columns:
            sets[f"sum fusion, + from scratch ({name})"] = pretrained + [name]
        for label, cols in sets.items():
            rows.append(dict(key, model=label, **binary_metrics(y, fuse(wide[cols].to_numpy().T, "sum"))))
    return pd.DataFrame(rows)


def scratch_glue(table: pd.DataFrame) -> dict:
    """k and n of each from-scratch recipe alone on each dataset's paper split, keyed for myst-nb glue
    (``scratch_<recipe>_<dataset>_paper_k`` / ``_n``)."""
    alone = table[(table["protocol"] == "paper") & table["recipe"].notna()]
    out = {}
    for _, r in alone.iterrows():
        key = f"scratch_{r['recipe']}_{r['dataset']}_paper"
        out[f"{key}_k"], out[f"{key}_n"] = int(r["n_correct"]), int(r["n"])
    return out


# ----------------------------------------------------------------------------- claims
def claims(cfg: Config, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per paper claim and protocol: our sum-rule fusion of all backbones against it.

    Paper protocol: one test set, exact k/n and its Clopper-Pearson interval.
    Grouped protocol: k/n pooled over the repeats is shown, but an image is tested in
    several repeats, so the verdict uses the mean accuracy over repeats and its t interval."""
    rows = []
    fused = scores[scores["model"] == "sum fusion, all backbones"]
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
                             paper_accuracy=paper, verdict=v))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- shortcut baselines
def size_only_baseline(cfg: Config, dataset: str) -> pd.DataFrame:
    """Accuracy of a depth-2 decision tree that sees only image width and height, per split."""
    from sklearn.tree import DecisionTreeClassifier

    size = {it.id: (it.width, it.height) for it in manifest("combined")}
    rows = []
    for protocol in ("paper", "grouped"):
        sp = splits(cfg, dataset, protocol)
        for r, part in sp.groupby("repeat"):
            tr, te = part[part["role"] != "test"], part[part["role"] == "test"]
            clf = DecisionTreeClassifier(max_depth=2, random_state=0)
            clf.fit(np.array([size[i] for i in tr["id"]]), tr["label"])
            p = clf.predict_proba(np.array([size[i] for i in te["id"]]))
            p_all = p[:, list(clf.classes_).index(1)] if 1 in clf.classes_ else np.zeros(len(te))
            rows.append(dict(protocol=protocol, repeat=int(r), dataset=dataset, model="image size only (tree)",
                             **binary_metrics(te["label"], p_all)))
    return pd.DataFrame(rows)


def majority_baseline(cfg: Config, dataset: str) -> pd.DataFrame:
    rows = []
    for protocol in ("paper", "grouped"):
        for r, part in splits(cfg, dataset, protocol).groupby("repeat"):
            tr, te = part[part["role"] != "test"], part[part["role"] == "test"]
            maj = int(tr["label"].mean() > 0.5)
            rows.append(dict(protocol=protocol, repeat=int(r), dataset=dataset, model="majority class",
                             **binary_metrics(te["label"], np.full(len(te), float(maj)))))
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, model): pooled k/n and mean/CI over repeats."""
    rows = []
    for (ds, protocol, model), part in scores.groupby(["dataset", "protocol", "model"], sort=True):
        k, n = int(part["n_correct"].sum()), int(part["n"].sum())
        rep = summarize_repeats(part["accuracy"])
        rows.append(dict(dataset=ds, protocol=protocol, model=model, repeats=len(part), k=k, n=n, accuracy=k / n,
                         mean=rep["mean"], sd=rep["sd"], ci_low=rep["ci_low"], ci_high=rep["ci_high"],
                         auc=float(part["auc"].mean())))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- book tables
def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".4g") if len(df) else "*(no results yet)*"


def fmt_pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.2f}"


def claims_markdown(cl: pd.DataFrame) -> str:
    rows = []
    for _, r in cl.iterrows():
        if r["protocol"] == "paper":
            est = f"{r['acc_pct_truncated']:.2f} / {r['acc_pct_rounded']:.2f}"
            ci = f"{fmt_pct(r['ci_low'])}-{fmt_pct(r['ci_high'])} (exact)"
        else:
            est = f"mean {fmt_pct(r['mean_over_repeats'])} (sd {fmt_pct(r['sd_over_repeats'])})"
            ci = f"{fmt_pct(r['mean_ci_low'])}-{fmt_pct(r['mean_ci_high'])} (t, {r['repeats']} splits)"
        rows.append({"dataset": r["dataset"], "protocol": r["protocol"], "paper %": f"{r['paper_accuracy']:.2f}",
                     "ours k/n": f"{r['n_correct']}/{r['n_test']}", "ours % (trunc. / round.)": est,
                     "95% CI %": ci, "verdict": r["verdict"]})
    return _md(pd.DataFrame(rows))


def write_book_tables(cfg: Config, folder: Path) -> None:
    """Markdown snippets the book's pages include; '(no results yet)' before a run."""
    folder.mkdir(parents=True, exist_ok=True)
    out = output_dir(cfg)
    cl_path = out / "claims.csv"
    cl = pd.read_csv(cl_path) if cl_path.is_file() else pd.DataFrame()
    atomic_write_text(folder / "claims.md", claims_markdown(cl) + "\n" if len(cl) else "*(no results yet)*\n")
    wt = weights_table(cfg)
    wt = wt.drop_duplicates(["backbone", "weights", "source", "sha256", "input_size", "preprocess"]) if len(wt) else wt
    if len(wt):
        wt = wt.drop(columns=["dataset", "hyperparameters"])
    atomic_write_text(folder / "weights.md", _md(wt) + "\n")
    for name in ("summary", "baselines"):
        p = out / "fusion" / f"{name}.csv"
        df = pd.read_csv(p) if p.is_file() else pd.DataFrame()
        if len(df):
            df = df[~df["model"].str.contains("member")].drop(columns=["auc"], errors="ignore")
            df = df.sort_values(["dataset", "protocol", "model"])
        atomic_write_text(folder / f"{name}.md", _md(df) + "\n")
    sp = out / "fusion" / "scratch_summary.csv"
    sc = pd.read_csv(sp).drop(columns=["auc"], errors="ignore") if sp.is_file() else pd.DataFrame()
    atomic_write_text(folder / "scratch.md", _md(sc) + "\n")
    tp = out / "tuning" / "best_hyperparameters.csv"
    atomic_write_text(folder / "hyperparameters.md", _md(pd.read_csv(tp) if tp.is_file() else pd.DataFrame()) + "\n")
    atomic_write_text(folder / "settings.md", settings_markdown(cfg))
    atomic_write_text(folder / "timings.md", timings_markdown(out / "timings" / "runs.json"))
    bench = out / "benchmark.json"
    atomic_write_text(folder / "benchmark.md", benchmark_markdown(bench))


def settings_markdown(cfg: Config) -> str:
    """Every setting of the profile, flattened (the book never types a setting by hand)."""
    rows = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            rows.append(dict(setting=prefix, value=", ".join(map(str, v)) if isinstance(v, list) else str(v)))

    walk("", dict(cfg))
    return _md(pd.DataFrame(rows)) + f"\n\nProfile `{cfg.name}` (`profiles/{cfg.name}.yaml`).\n"


def _cache_text(c: dict | None) -> str:
    if c is None:
        return "not recorded"
    if not any(c.values()):
        return "empty"
    return ", ".join(f"{v} {k}" for k, v in c.items() if v)


def timings_markdown(path: Path, bar_minutes: float = 60.0) -> str:
    """Wall time of every recorded run: per step (summed over its variants), per variant, the
    total against the bar, what dominated, and what the cache held when the run started."""
    import json

    if not path.is_file():
        return "*(no run recorded yet)*\n"
    runs = json.loads(path.read_text())
    names = [f"run {i + 1}: {r['started']} ({r['commit']})" for i, r in enumerate(runs)]
    per_run = [{} for _ in runs]  # seconds per step (summed over its variants), per run
    for steps, r in zip(per_run, runs):
        for k, v in r["variants"].items():
            steps[k.split("__")[0]] = steps.get(k.split("__")[0], 0.0) + v
    lines = []
    for name, r, steps in zip(names, runs, per_run):
        top = max(steps, key=steps.get)
        cache = r.get("cache_at_start")
        if cache is not None and not any(cache.values()):  # only a run from an empty cache measures the bar
            verdict = "within" if r["total_seconds"] <= 60 * bar_minutes else "over"
            verdict = f" ({verdict} the {bar_minutes:.0f}-minute bar for a run from an empty cache)"
        else:
            verdict = ""
        lines.append(f"- **{name}**: {r['total_seconds'] / 60:.1f} min in total{verdict}, "
                     f"{len(r['variants'])} notebooks executed, cache at start: "
                     f"{_cache_text(r.get('cache_at_start'))}; the largest step was `{top}` "
                     f"({steps[top] / 60:.1f} min, {100 * steps[top] / r['total_seconds']:.0f}%).")
    agg = pd.DataFrame(dict(zip(names, per_run))).sort_index()
    agg.loc["total (s)"] = [r["total_seconds"] for r in runs]
    variants = sorted({k for r in runs for k in r["variants"]})
    df = pd.DataFrame({n: [r["variants"].get(s) for s in variants] for n, r in zip(names, runs)}, index=variants)
    df.loc["total (s)"] = [r["total_seconds"] for r in runs]
    df.loc["machine"] = [r["machine"] for r in runs]
    return ("\n".join(lines) + "\n\nSeconds per step:\n\n"
            + agg.reset_index(names="step").to_markdown(index=False, floatfmt=".0f")
            + "\n\nSeconds per executed notebook:\n\n"
            + df.reset_index(names="notebook").to_markdown(index=False, floatfmt=".0f") + "\n")


def benchmark_markdown(path: Path) -> str:
    import json

    if not path.is_file():
        return "*(no benchmark recorded yet: run `python scripts/benchmark.py`)*\n"
    b = json.loads(path.read_text())
    df = pd.DataFrame(b["backbones"]).T.reset_index(names="backbone")
    env = b["environment"]
    return (f"Measured {b['when']} on {env['cpus']} CPUs ({env['platform']}), Keras {env['keras']} "
            f"on {env['backend']}.\n\n" + df.to_markdown(index=False) + "\n")
