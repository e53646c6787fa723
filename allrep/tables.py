"""The book's generated tables: markdown built from the results files (which the step registry
names) and from the profile. Returns strings; ``allrep book`` writes them into ``book/_generated``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import places
from .profile import Profile
from .registry import expand, get_step

TIMINGS = "timings/runs.json"  # written by the runner, not by a step
BENCHMARK = "benchmark.json"  # written by scripts/benchmark.py


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".4g") if len(df) else "*(no results yet)*"


def fmt_pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.2f}"


def claims_markdown(cl: pd.DataFrame, weights: pd.DataFrame | None = None) -> str:
    """The claims table; with the ensembles' weights table, each row names the fused backbones that
    started from random weights."""
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
        if weights is not None and len(weights):
            w = weights[(weights["dataset"] == r["dataset"]) & (weights["weights"] == "random")]
            rows[-1]["random-init backbones in the fusion"] = ", ".join(sorted(w["backbone"])) or "none"
    return _md(pd.DataFrame(rows))


def _outputs(cfg: Profile, step: str, name: str) -> list[Path]:
    """The files a step's declared output ``name`` names for this profile (the registry owns paths)."""
    s = get_step(step)
    return sorted({p for v in s.variants(cfg) for p in expand(cfg, v, s.outputs[name]).values()})


def _csv(cfg: Profile, step: str, name: str) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in _outputs(cfg, step, name) if p.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _json(cfg: Profile, step: str, name: str) -> dict:
    return {p.name: json.loads(p.read_text()) for p in _outputs(cfg, step, name) if p.is_file()}


def weights_table(meta: dict) -> pd.DataFrame:
    """Which weights each backbone used, per dataset, from the ensembles' records."""
    rows = []
    for m in meta.values():
        w = m["weights"]
        rows.append(dict(backbone=m["backbone"], dataset=m["dataset"], weights=w["kind"], source=w["source"],
                         sha256=(w.get("sha256") or "")[:16], input_size=w["input_size"], preprocess=w["preprocess"],
                         hyperparameters=m["hp_source"]))
    return pd.DataFrame(rows).sort_values(["backbone", "dataset"], ignore_index=True) if rows else pd.DataFrame()


def hyperparameter_table(best: dict) -> pd.DataFrame:
    """The tuned head of every (backbone, dataset), from the tuning step's records."""
    rows = [dict(backbone=b["backbone"], dataset=b["dataset"], **b["hyperparameters"]) for b in best.values()]
    return pd.DataFrame(rows).sort_values(["backbone", "dataset"], ignore_index=True) if rows else pd.DataFrame()


def plain_markdown(t: pd.DataFrame) -> str:
    """The tuned ensembles against the plain reference heads, with a sentence naming where tuning lost."""
    df = t.assign(tuned=[f"{a}/{n}" for a, n in zip(t["tuned_k"], t["n"])],
                  plain=[f"{a}/{n}" for a, n in zip(t["plain_k"], t["n"])],
                  tuned_mean=t["tuned_mean"].map(fmt_pct), plain_mean=t["plain_mean"].map(fmt_pct))
    df = df[["dataset", "protocol", "model", "tuned", "plain", "tuned_mean", "plain_mean", "tuned_beats_plain"]]
    lost = t[(t["protocol"] == "grouped") & (t["tuned_beats_plain"] != "yes")]
    if len(lost):
        text = ("Under the grouped protocol the tuned ensemble does **not** beat the plain head for: "
                + "; ".join(f"{r['model']} on {r['dataset']} ({r['tuned_k']} vs {r['plain_k']} of {r['n']})"
                            for _, r in lost.iterrows()) + ".")
    else:
        text = "Under the grouped protocol every tuned ensemble beats its plain head."
    return _md(df) + "\n\n" + text + "\n"


def search_space_markdown() -> str:
    from .tuning import space_table

    return _md(space_table()) + "\n"


def book_tables(cfg: Profile) -> dict[str, str]:
    """Markdown snippets the book's pages include, by file name; '(no results yet)' before a run."""
    out = {}
    cl = _csv(cfg, "60_results", "claims")
    wt = weights_table(_json(cfg, "30_ensemble", "meta"))
    out["claims.md"] = claims_markdown(cl, wt) + "\n" if len(cl) else "*(no results yet)*\n"
    if len(wt):
        wt = wt.drop_duplicates(["backbone", "weights", "source", "sha256", "input_size", "preprocess"])
        wt = wt.drop(columns=["dataset", "hyperparameters"])
    out["weights.md"] = _md(wt) + "\n"
    for name in ("summary", "baselines"):
        df = _csv(cfg, "50_fusion", name)
        if len(df):
            df = df[~df["model"].str.contains("member")].drop(columns=["auc"], errors="ignore")
            df = df.sort_values(["dataset", "protocol", "model"])
        out[f"{name}.md"] = _md(df) + "\n"
    summ = _csv(cfg, "50_fusion", "summary")
    if len(summ) and summ["model"].str.endswith("plain head").any():
        from .scores import tuned_vs_plain

        out["plain.md"] = plain_markdown(tuned_vs_plain(summ))
    else:
        out["plain.md"] = "*(no results yet)*\n"
    sc = _csv(cfg, "35_scratch", "summary").drop(columns=["auc"], errors="ignore")
    if "note" in sc:
        sc["note"] = sc["note"].fillna("")  # an empty note reads back from CSV as NaN
    out["scratch.md"] = _md(sc) + "\n"
    members = _csv(cfg, "30_ensemble", "members")
    if len(members):
        from .training import convergence

        out["convergence.md"] = _md(convergence(members)) + "\n"
    else:
        out["convergence.md"] = "*(no results yet)*\n"
    out["hyperparameters.md"] = _md(hyperparameter_table(_json(cfg, "20_tuning", "best"))) + "\n"
    out["search_space.md"] = search_space_markdown()
    out["settings.md"] = settings_markdown(cfg)
    out["timings.md"] = timings_markdown(places.output_dir(cfg) / TIMINGS)
    out["benchmark.md"] = benchmark_markdown(places.output_dir(cfg) / BENCHMARK)
    return out


def settings_markdown(cfg: Profile) -> str:
    """Every setting of the profile, flattened (the book never types a setting by hand)."""
    rows = [dict(setting=k, value=", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in cfg.flat()]
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
    if not path.is_file():
        return "*(no benchmark recorded yet: run `python scripts/benchmark.py`)*\n"
    b = json.loads(path.read_text())
    df = pd.DataFrame(b["backbones"]).T.reset_index(names="backbone")
    env = b["environment"]
    return (f"Measured {b['when']} on {env['cpus']} CPUs ({env['os']} {env['machine']}, accelerator: "
            f"{env['accelerator']}), Keras {env['keras']} "
            f"on {env['backend']}.\n\n" + df.to_markdown(index=False) + "\n")
