"""Step 20: nested Bayesian optimisation of one backbone's GRU head on one dataset.

One search per split (the paper split and every grouped repeat), each on that split's training
part with its grouped validation part as the objective; test images are never loaded
(:mod:`allrep.train.tuning`). The searches' trials share one pool of stacked heads, and every trial is
cached by the member engine: a killed search resumes.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd

from allrep.cache import folder
from allrep.repro import seed_for
from allrep.train import tuning
from allrep.train.features import for_backbone

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def searches(ctx: Context) -> dict[str, tuple]:
    """name -> (backbone, split, seed) of every search of the variant (names are unique across variants)."""
    cfg = ctx.cfg
    return {f"{ctx.backbone}-{ctx.dataset}-{protocol}-{r}":
            (ctx.backbone, split, seed_for(cfg.seed, "tune", ctx.backbone, ctx.dataset, protocol, r))
            for protocol, r, split in ctx.each_split()}


def choices(cfg, found: dict) -> dict:
    """With ``recipe_choice.enabled``: each search's recipe, chosen inside its split on the validation part
    (:func:`allrep.train.recipe.choose_in_split`; the candidates' heads of every search trained in one batch by
    the member engine). name -> choice; empty when disabled (every search uses ``head:``/``training:``)."""
    if not cfg.recipe_choice.enabled:
        return {}
    from allrep.train import members, recipe

    plans = {(n, c): p for n, (bb, split, seed) in found.items()
             for c, p in recipe.choice_plans(cfg, bb, split, seed_for(seed, "recipe-choice")).items()}
    res = dict(zip(plans, members.fetch(cfg, list(plans.values()))))
    return {n: recipe.choose_in_split(cfg, bb, split, seed_for(seed, "recipe-choice"),
                                      {c: res[(n, c)] for c in cfg.recipe_choice.candidates})
            for n, (bb, split, seed) in found.items()}


def tune(cfg, found: dict) -> dict:
    """Run (or resume) the searches ``found`` (:func:`searches`, of one variant or of many) in shared pools:
    one call per recipe (each split's own choice, :func:`choices`, or the profile's), the chosen recipe's
    head as the search's architecture and its training section for every trial."""
    chosen = choices(cfg, found)
    groups: dict = {}
    for n in found:
        c = chosen.get(n)
        groups.setdefault(c["recipe"] if c else None, []).append(n)
    out = {}
    for recipe_name, names in groups.items():
        head, ts = (chosen[names[0]]["head"], chosen[names[0]]["training"]) if recipe_name else (cfg.head, cfg.training)
        alias = {(f"{n}-{recipe_name}" if recipe_name else n): n for n in names}  # a search's oracle is per recipe
        part = {a: found[n] for a, n in alias.items()}
        res = tuning.tune_splits({a: s[2] for a, s in part.items()}, head, ts, cfg.tuning.trials,
                                 cfg.tuning.initial_points, folder("tuning"), tuning.Trials(cfg, part, ts))
        for a, n in alias.items():
            out[n] = dict(res[a], choice=chosen.get(n))
    return out


def units(ctx: Context) -> list[dict]:
    """The work of this variant for a cluster: one unit per search (a search is sequential)."""
    return [{n: s} for n, s in searches(ctx).items()]


def run_units(cfg, units: list[dict]) -> None:
    """Run the searches of ``units`` (of any variants) together: :func:`tune` on their union."""
    tune(cfg, {n: s for u in units for n, s in u.items()})


def run(ctx: Context) -> dict:
    cfg, backbone, dataset = ctx.cfg, ctx.backbone, ctx.dataset
    t0 = time.perf_counter()
    fc = for_backbone(cfg, backbone)
    found = searches(ctx)
    res = tune(cfg, found)
    best, trials = [], []
    for (protocol, r, _), name in zip(ctx.each_split(), found):
        out = res[name]
        row = dict(protocol=protocol, repeat=r, **out["best"].to_dict(), val_loss=round(out["best_loss"], 6))
        if out["choice"]:  # the recipe this split chose, and the validation evidence for it
            row["recipe"] = out["choice"]["recipe"]
            for c, ev in out["choice"]["candidates"].items():
                row[f"recipe_nll_{c}"] = round(ev["nll"], 6)
        best.append(row)
        trials += [dict(protocol=protocol, repeat=r, **t) for t in out["trials"]]
    best = pd.DataFrame(best).assign(backbone=backbone, dataset=dataset)
    trials = pd.DataFrame(trials).assign(backbone=backbone, dataset=dataset).round(6)
    ctx.write_csv(best, "best")
    ctx.write_csv(trials, "trials")
    return dict(best=best, trials=trials, seconds=time.perf_counter() - t0, feature_seconds=fc.seconds, weights=fc.w)


def trial_gain(trials: pd.DataFrame, early: int) -> pd.DataFrame:
    """What the trials after the first ``early`` gained: per search, the best validation NLL after
    ``early`` trials and after all of them (the cost, on validation, of stopping a search earlier)."""
    rows = []
    for (protocol, r), g in trials.groupby(["protocol", "repeat"], sort=True):
        g = g.sort_values("trial")
        rows.append(dict(protocol=protocol, repeat=r, best_after_early=g["val_loss"].iloc[:early].min(),
                         best_after_all=g["val_loss"].min()))
    out = pd.DataFrame(rows)
    out["gain"] = out["best_after_early"] - out["best_after_all"]
    return out
