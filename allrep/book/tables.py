"""The book's generated tables: markdown built from the results files (which the step registry names) and from
the profile, written by ``allrep book`` into ``book/_generated``; :func:`markdown_table` is the one writer of a
markdown table. :func:`summary_view` gives the frame a notebook displays for a score summary.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from allrep.profile import Profile
from allrep.record import places
from allrep.runner.pipeline import STOPPED, UNITS
from allrep.runner.registry import OTHER_OUTPUTS, expand, get_step
from allrep.train.backbones import weights_table
from allrep.train.tuning import hyperparameter_table

TIMINGS, RECIPE, BENCHMARK = (OTHER_OUTPUTS[n][0] for n in ("timings", "recipe_study", "benchmark"))


DATASET_NAMES = {"IDB1": "ALL-IDB1", "IDB2": "ALL-IDB2", "combined": "ALL-IDB1 + ALL-IDB2"}  # as the book names them


def markdown_table(df: pd.DataFrame) -> str:
    """A frame as a markdown table (the one writer of the book's generated tables): no index column, headers in
    words (``outer_splits`` -> ``outer splits``)."""
    if not len(df):
        return "*(no results yet)*"
    return df.rename(columns=lambda c: str(c).replace("_", " ")).to_markdown(index=False, floatfmt=".4g")


def fmt_pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.2f}"


def claims_markdown(cl: pd.DataFrame, weights: pd.DataFrame | None = None, compact: bool = False) -> str:
    """The claims table (rule in :mod:`allrep.evaluate.claims`): per claim, protocol and fused model, pooled k/n,
    the rule's one-sided bounds at the effective n, the verdict and its margin. ``compact``: the columns
    that fit the intro's page. ``weights`` is accepted for callers that pass it; the ``models`` column
    already names the random backbones."""
    rows = []
    for _, r in cl.iterrows():
        margin = "" if pd.isna(r.get("margin")) else f"{int(r['margin'])} image{'s' if int(r['margin']) != 1 else ''}"
        row = {"dataset": r["dataset"], "protocol": r["protocol"], "models": r["models"],
               "paper %": f"{r['paper_accuracy']:.2f}", "ours k/n": f"{r['n_correct']}/{r['n_test']}",
               "ours %": f"{r['acc_pct_truncated']:.2f}",
               "bounds %": f"{fmt_pct(r['bound_low'])} to {fmt_pct(r['bound_high'])}",
               "verdict": r["verdict"], "margin": margin}
        if not compact:
            row["effective n"] = f"{r['effective_n']:.0f}"
            row["splits reaching the paper"] = f"{r['reach_paper']} of {r['repeats']}"
            row["test images with a group in training"] = f"{100 * r['leakage']:.0f}%"
        rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def summary_view(df: pd.DataFrame) -> pd.DataFrame:
    """A score summary (allrep.evaluate.scores.summarize) as a person reads it: k/n, percentages with two decimals,
    and for one split its exact interval, for repeats the mean, sd and the range over splits. No nan:
    a cell that does not apply is blank."""
    if not len(df):
        return df
    out = df[["dataset", "protocol", "model"]].copy()
    out["splits"] = df["repeats"]
    out["k/n"] = [f"{k}/{n}" for k, n in zip(df["k"], df["n"])]
    one = df["repeats"] == 1
    out["accuracy %"] = [f"{100 * a:.2f}" if o else f"mean {100 * m:.2f} (sd {100 * s:.2f})"
                         for o, a, m, s in zip(one, df["accuracy"], df["mean"], df["sd"])]
    from allrep.evaluate.metrics import clopper_pearson

    out["95% interval % (one split: exact) / range over splits %"] = [
        "{:.2f} to {:.2f}".format(*(100 * x for x in clopper_pearson(k, n))) if o else f"{100 * mn:.2f} to {100 * mx:.2f}"
        for o, k, n, mn, mx in zip(one, df["k"], df["n"], df.get("min", df["mean"]), df.get("max", df["mean"]))]
    if "note" in df:
        out["note"] = df["note"].fillna("")
    return out


def _outputs(cfg: Profile, step: str, name: str) -> list[Path]:
    """The files a step's declared output ``name`` names for this profile (the registry owns paths)."""
    s = get_step(step)
    return sorted({p for v in s.variants(cfg) for p in expand(cfg, v, s.outputs[name]).values()})


def _csv(cfg: Profile, step: str, name: str) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in _outputs(cfg, step, name) if p.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _json(cfg: Profile, step: str, name: str) -> dict:
    return {p.name: json.loads(p.read_text()) for p in _outputs(cfg, step, name) if p.is_file()}


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
    return markdown_table(df) + "\n\n" + text + "\n"


def search_space_markdown() -> str:
    from allrep.train.tuning import space_table

    return markdown_table(space_table()) + "\n"


def book_tables(cfg: Profile) -> dict[str, str]:
    """Markdown snippets the book's pages include, by file name; '(no results yet)' before a run."""
    out = {}
    cl = _csv(cfg, "60_results", "claims")
    wt = weights_table(_json(cfg, "30_ensemble", "meta"))
    out["claims.md"] = claims_markdown(cl, wt, compact=True) + "\n" if len(cl) else "*(no results yet)*\n"
    if len(wt):
        wt = wt.drop_duplicates(["backbone", "weights", "source", "sha256", "input_size", "preprocess"])
        wt = wt.drop(columns=["dataset", "hyperparameters"])
    out["weights.md"] = markdown_table(wt) + "\n"
    for name in ("summary", "baselines"):
        df = _csv(cfg, "50_fusion", name)
        if len(df):
            df = df[~df["model"].str.contains("member")].drop(columns=["auc"], errors="ignore")
            df = summary_view(df.sort_values(["dataset", "protocol", "model"]))
        out[f"{name}.md"] = markdown_table(df) + "\n"
    summ = _csv(cfg, "50_fusion", "summary")
    if len(summ) and summ["model"].str.endswith("plain head").any():
        from allrep.evaluate.scores import tuned_vs_plain

        out["plain.md"] = plain_markdown(tuned_vs_plain(summ))
    else:
        out["plain.md"] = "*(no results yet)*\n"
    sc = _csv(cfg, "35_scratch", "summary").drop(columns=["auc"], errors="ignore")
    out["scratch.md"] = markdown_table(summary_view(sc)) + "\n"
    members = _csv(cfg, "30_ensemble", "members")
    if len(members):
        from allrep.train.heads import convergence

        out["convergence.md"] = markdown_table(convergence(members)) + "\n"
    else:
        out["convergence.md"] = "*(no results yet)*\n"
    out["hyperparameters.md"] = markdown_table(hyperparameter_table(_csv(cfg, "20_tuning", "best"))) + "\n"
    out["search_space.md"] = search_space_markdown()
    out["recipe.md"] = recipe_markdown(cfg, places.output_dir(cfg) / RECIPE)
    out["settings.md"] = settings_markdown(cfg)
    out["timings.md"] = timings_markdown(places.output_dir(cfg) / TIMINGS)
    out["benchmark.md"] = benchmark_markdown(places.output_dir(cfg) / BENCHMARK)
    return out


def digests_markdown(profile: str = "smoke") -> str:
    """The committed per-stage digests of ``profile``'s run (allrep.record.digests), one row per CPU recorded:
    per stage, the first 8 hex digits of its digest, so equal stages read equal across rows. Below the table, each
    record's arithmetic (the versions of the feature extraction, the member engine and the scoring) says which code
    it describes: records of other arithmetic are not expected to agree."""
    from allrep.profile import load_profile
    from allrep.record import digests

    recs = digests.records(load_profile(profile))
    if not recs:
        return f"*(no digests recorded yet: `allrep digests --profile {profile} --record` after a {profile} run)*\n"
    rows = []
    for r in recs:
        flags = set(r["cpu"].get("flags", []))
        row = {"CPU": r["cpu"].get("model", "unknown"),
               "widest vectors": " ".join(f for f in ("avx2", "avx512f", "amx_tile") if f in flags) or "none"}
        for stage in digests.STAGES:
            row[stage] = digests.stage_sha256(r, stage)[:8]
        rows.append(row)
    arithmetic = [f"- {r['cpu'].get('model', 'unknown')}: {digests.arithmetic_words(r)}"
                  for r in recs]  # below the table, which stays narrow enough for the page
    return markdown_table(pd.DataFrame(rows)) + "\n\nThe arithmetic each record describes:\n\n" + "\n".join(arithmetic) + "\n"


def recipe_markdown(cfg: Profile, path: Path) -> str:
    """The recipe study's evidence (allrep.train.recipe): per candidate its paired held-out NLL against the
    base, pooled accuracy, heads ended by the epoch cap and cost; then the decision the rule makes and
    the recipe the profile uses."""
    from allrep.train.recipe import CONFIRM, decide, summary

    if not path.is_file():
        return "*(no recipe study recorded yet: run `python scripts/recipe_study.py`)*\n"
    res = pd.read_csv(path)
    s = summary(res, cfg)
    d = decide(s, cfg)
    t = pd.DataFrame({
        "candidate": s["candidate"], "changes from the base": s["changes"].replace("", "(the base)"),
        "held-out NLL": s["nll"].map("{:.3f}".format),
        "paired difference (SE)": [("" if c == "base" else f"{x:+.3f} ({e:.3f})")
                                   for c, x, e in zip(s["candidate"], s["d_nll"], s["se_d_nll"])],
        "accuracy k/n": [f"{k}/{n} ({100 * k / n:.1f}%)" for k, n in zip(s["correct"], s["n"])],
        "ended by the cap": [f"{c}/{h}" for c, h in zip(s["capped"], s["heads"])],
        "s per head": s["seconds_per_head"].map("{:.1f}".format),
        "adopted": ["yes" if c in d["adopted"] else "" for c in s["candidate"]]})
    head, ts = cfg.head, cfg.training
    rs = cfg.recipe_study
    folds = res.groupby(["backbone", "dataset", "fold"]).ngroups
    chosen = ", ".join(f"{k}={v}" for k, v in d["changes"].items())
    used = dict(pool=ts.pool, pca=ts.pca, whiten=ts.whiten, epochs=ts.epochs, patience=ts.patience,
                min_delta=ts.min_delta, batch_size=ts.batch_size, projection=head.projection,
                gru_units=head.gru_units, dense_units=head.dense_units)
    confirm = s[s["candidate"] == CONFIRM]
    text = (f"Training all {len(res)} heads took {res['seconds'].sum() / 60:.0f} min of wall-clock time on two CPU cores "
            f"(the study's own timing, not a benchmark). "
            f"{folds} paired cells per candidate (3 backbones x {len(rs.datasets)} datasets x {rs.folds} inner folds of "
            f"grouped repeat {rs.repeat}'s training part; {int(s['n'].iloc[0])} held-out images per candidate).\n\n"
            f"**Base**: " + ", ".join(f"{k}={v}" for k, v in rs.base.changes().items()) + ".\n\n"
            f"**Decision** (`allrep.train.recipe.decide`): the base with {chosen or 'no change'}.\n\n"
            f"**The profile's recipe** (`head:` and `training:`): "
            + ", ".join(f"{k}={v}" for k, v in used.items()) + ".")
    if len(confirm):
        c = confirm.iloc[0]
        text += (f"\n\n**Re-scored on the same folds** (candidate `{CONFIRM}`): held-out NLL {c['nll']:.3f} "
                 f"({c['d_nll']:+.3f} against the base, SE {c['se_d_nll']:.3f}), {c['correct']}/{c['n']} correct, "
                 f"{c['capped']}/{c['heads']} heads ended by the cap, {c['seconds_per_head']:.1f} s per head.")
    return markdown_table(t) + "\n\n" + text + "\n"


def settings_markdown(cfg: Profile) -> str:
    """Every setting of the profile, flattened (the book never types a setting by hand)."""
    rows = [dict(setting=k, value=", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in cfg.flat()]
    return markdown_table(pd.DataFrame(rows)) + f"\n\nProfile `{cfg.name}` (`profiles/{cfg.name}.yaml`).\n"


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
        if r.get("interrupted"):
            verdict = " (stopped part-way: the steps it finished, and the one it stopped in up to the stop)"
        elif cache is not None and not any(cache.values()):  # only a run from an empty cache measures the planned time
            verdict = "within" if r["total_seconds"] <= 60 * bar_minutes else "over"
            verdict = f" ({verdict} the {bar_minutes:.0f} minutes the profile plans for a run from an empty cache)"
        else:
            verdict = ""
        lines.append(f"- **{name}**: {r['total_seconds'] / 60:.1f} min in total{verdict}, "
                     f"{sum(not k.endswith((UNITS, STOPPED)) for k in r['variants'])} notebooks executed, "
                     f"cache at start: "
                     f"{_cache_text(r.get('cache_at_start'))}; the largest step was `{top}` "
                     f"({steps[top] / 60:.1f} min, {100 * steps[top] / r['total_seconds']:.0f}%).")
    # One row per run, one short column per step: a table that fits the page however many runs are recorded.
    steps = sorted({s for st in per_run for s in st})
    agg = pd.DataFrame([{"run": f"{i + 1}", "started": r["started"], "commit": r["commit"][:7],
                         **{s.split("_")[0]: ("" if s not in st else f"{st[s]:.0f}") for s in steps},
                         "total": f"{r['total_seconds']:.0f}"} for i, (r, st) in enumerate(zip(runs, per_run))])
    legend = ", ".join(f"{s.split('_')[0]} `{s}`" for s in steps)
    variants = sorted({k for r in runs for k in r["variants"] if not k.endswith(STOPPED)})  # whole ones only
    per = pd.DataFrame([{"notebook": v, "runs that executed it": sum(v in r["variants"] for r in runs),
                         "latest (s)": next((f"{r['variants'][v]:.0f}" for r in reversed(runs) if v in r["variants"])),
                         "median (s)": f"{pd.Series([r['variants'][v] for r in runs if v in r['variants']]).median():.0f}",
                         "largest (s)": f"{max(r['variants'][v] for r in runs if v in r['variants']):.0f}"}
                        for v in variants])
    machines = sorted({r["machine"] for r in runs})
    return ("\n".join(lines) + f"\n\nSeconds per step (columns: {legend}):\n\n" + markdown_table(agg)
            + "\n\nSeconds per executed notebook, over the runs that executed it:\n\n" + markdown_table(per)
            + "\n\nMachines: " + "; ".join(f"`{m}`" for m in machines) + ".\n")


def _predict_line(p: dict | None) -> str:
    if not p:
        return "\n`allrep predict` was not measured (no final models when the benchmark ran).\n"
    return (f"\n`allrep predict` on {p['images']} {p['dataset']} files: {p['seconds_with_model_loading']} s including model "
            f"loading, {p['seconds_models_loaded']} s with the models loaded ({p['images_per_second_loaded']} images/s).\n")


def benchmark_markdown(path: Path) -> str:
    if not path.is_file():
        return "*(no benchmark recorded yet: run `python scripts/benchmark.py`)*\n"
    b = json.loads(path.read_text())
    df = pd.DataFrame(b["backbones"]).T.drop(columns="all_368_images_seconds_estimate", errors="ignore")
    df = df.reset_index(names="backbone").rename(columns={
        "input_size": "input", "feature_images_per_second": "features (images/s)",
        "head_samples_per_second": "head (samples/s)",
        "member_seconds": "member (s)", "member_epochs": "member epochs"})
    df["head (samples/s)"] = [f"{x:.0f}" for x in df["head (samples/s)"]]
    df["sequence"] = [" x ".join(map(str, x)) if isinstance(x, list) else x for x in df["sequence"]]
    env = b["environment"]
    return (f"Measured {b['when']} on {env['cpus']} CPUs ({env['os']} {env['machine']}, accelerator: "
            f"{env['accelerator']}), Keras {env['keras']} "
            f"on {env['backend']}.\n\n" + markdown_table(df) + "\n" + _predict_line(b.get("predict"))
            + _head_training_md(b.get("head_training")) + _head_profile_md(b.get("head_profile"))
            + _final_models_md(b.get("final_models")) + _registered_design_md(b.get("registered_design"))
            + _workers_md(b.get("smoke_workers")))


def _final_models_md(f: dict | None) -> str:
    """Step 70's final models of one dataset, with the search run again and with the outer split's reused."""
    if not f:
        return ""
    return (f"\n**Step 70's final models** (measured {f['when']}, commit {f['commit']}; `scripts/benchmark.py --parts "
            f"final_models`): the {f['dataset']} models of the {f['profile']} design, {len(f['backbones'])} backbones, "
            f"from an empty members cache, took {f['searched_again_seconds']:.0f} s with the recipe choice and search "
            f"run again on the final split, and {f['reused_seconds']:.0f} s reusing the decisions of the outer split "
            f"the held-out groups come from ({f['ratio']:.1f} times faster).\n")


def _registered_design_md(r: dict | None) -> str:
    """The registered design's full work from an empty cache (profile ``timing``), and each step's share."""
    if not r:
        return ""
    steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in sorted(r["per_step"].items()))
    took = (f"was stopped after {r['minutes']:.1f} minutes on {r['cpus']} CPU cores, serial, in step "
            f"{', '.join(r.get('stopped_in', [])) or 'unknown'} (so the full work takes longer). Minutes per step, the "
            f"last one up to the stop" if r.get("interrupted") else
            f"took {r['minutes']:.1f} minutes on {r['cpus']} CPU cores, serial. Minutes per step")
    return (f"\n**The registered design from an empty cache** (measured {r['when']}, commit {r['commit']}; "
            f"`scripts/benchmark.py --parts registered_design`): every setting of the registered run's profile on another "
            f"split seed (profile `{r['profile']}`, seed {r['split_seed']}; its scorings are in the ledger as benchmark "
            f"looks and never reported) {took}: {steps}.\n")


PROFILE_RECIPES = {"registered": "registered, 4 x 64", "base": "base, 16 x 256, projection 128",
                   "projection": "16 x 1,280, projection 64"}


def _head_profile_md(h: dict | None) -> str:
    """Where head training's time goes, per recipe (scripts/profile_heads.py): heads per second before and after,
    the engine's parts, one step at 1 and at 16 stacked heads (milliseconds per head), plain Keras fit, and JAX."""
    if not h:
        return ""
    a, speed, parts_rows = h["after"], [], []
    for name, label in PROFILE_RECIPES.items():
        r, b = a["recipes"][name], h["before"]["recipes"][name]
        parts = r["parts"]
        total = sum(parts.values())
        row = {"recipe": label, "before (heads/s)": b["heads_per_second"], "after (heads/s)": r["heads_per_second"],
               "after / before": h["speedup"][name], "Keras fit (heads/s)": r["keras_fit_heads_per_second"]}
        if "after_jax" in h:
            row["engine on JAX (heads/s)"] = h["after_jax"]["recipes"][name]["heads_per_second"]
        speed.append(row)
        parts_rows.append({"recipe": label, "training steps": f"{parts['training step'] / total:.0%}",
                           "validation predictions": f"{parts['validation predictions'] / total:.0%}",
                           "ms per head-step, alone": round(1000 * r["step_seconds_K1"], 1),
                           "ms per head-step, 16 stacked": round(1000 * r["step_seconds_K16"] / 16, 1),
                           "GFLOP/s, 16 stacked": r["step_gflops_per_second"]})
    return (f"\n**Where head training's time goes** (measured {h['when']}; `scripts/profile_heads.py`: "
            f"{a['heads']} heads per recipe, {a['epochs']} epochs each, one ALL-IDB2 split's size with 8 views; "
            f"*before* is the code of commit {h['commit_before']}). A large float32 matmul runs at "
            f"{a['matmul_gflops_per_second']} GFLOP/s on these cores, and one optimiser step that does nothing "
            f"costs {1000 * a['dispatch_seconds_per_step_K16']:.1f} ms. Heads per second:\n\n"
            + markdown_table(pd.DataFrame(speed)) + "\n\nWhere the engine's time goes (shares of its time), and one "
            "optimiser step alone and stacked:\n\n" + markdown_table(pd.DataFrame(parts_rows)) + "\n")


def _head_training_md(h: dict | None) -> str:
    """Heads per second before and after the member engine, and the arithmetic rate beside a matmul's."""
    if not h:
        return ""
    kinds = {"tuning_trials": "tuning trials", "ensemble_members": "ensemble members", "plain_heads": "plain heads"}
    rows = []
    for k, label in kinds.items():
        b, a = h["before"][k], h["after"][k]
        rows.append({"heads": label, "n": a["heads"], "before (heads/s)": b["heads_per_second"],
                     "after (heads/s)": a["heads_per_second"], "after / before": h["speedup"][k],
                     "optimizer steps": f"{b['optimizer_steps']} -> {a['optimizer_steps']}",
                     "GFLOP/s": f"{b['gflops_per_second']} -> {a['gflops_per_second']}"})
    a = h["after"]
    return (f"\n**Head training** (measured {h['when']}; `scripts/bench_heads.py`: the paper recipe, "
            f"{a['backbone']} on ALL-IDB1 and ALL-IDB2, every split, {a['trials']} trials per search; *before* is "
            f"the code of commit {h['commit_before']}, *after* today's, in one run on the same cached features). "
            f"A large float32 matmul runs at {a['matmul_gflops_per_second']} GFLOP/s on these cores; the GFLOP/s "
            "columns count the arithmetic of every slot of every optimiser step (forward and backward, about "
            "three forward passes), so they show how far head training is from what the machine can do:\n\n"
            + markdown_table(pd.DataFrame(rows)) + "\n")


def _workers_md(w: dict | None) -> str:
    if not w:
        return ""
    return (f"\n**The smoke profile from an empty cache** (measured {w['when']}): {w['serial']:.0f} s serial, "
            f"{w['workers_1']:.0f} s on a local Dask cluster of 1 worker, {w['workers_2']:.0f} s on 2 workers "
            f"(1 to 2 workers: {w['ratio_1_to_2_workers']:.2f}x).\n")
