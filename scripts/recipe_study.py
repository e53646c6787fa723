"""Run the recipe study of a profile (allrep.train.recipe) and write its evidence to results/recipe/.

    ALLREP_DATA=... python scripts/recipe_study.py --profile paper

Cached per (candidate, backbone, dataset, inner fold) under the cache folder: a killed run resumes.
"""
from __future__ import annotations

import argparse
import time


def main(argv=None) -> None:
    from allrep import repro
    from allrep.data.splits import make_splits
    from allrep.io import atomic_write_csv
    from allrep.profile import load_profile
    from allrep.runner.registry import other_output
    from allrep.train import recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--backbones", nargs="*")
    a = ap.parse_args(argv)
    cfg = load_profile(a.profile)
    from allrep.record.seal import refusal

    if refusal(cfg) is not None and not getattr(a, "out", None):  # a sealed run's folder is a record
        raise SystemExit(refusal(cfg))
    repro.setup(cfg.seed)
    t0 = time.perf_counter()
    sp = {ds: make_splits(ds, "grouped", cfg.seed, cfg.splits.test_fraction, cfg.splits.val_fraction,
                          cfg.splits.repeats) for ds in cfg.recipe_study.datasets}
    res = recipe.study(cfg, sp, a.backbones)
    atomic_write_csv(res.round(6), other_output("recipe_study", cfg))  # declared in allrep.runner.registry
    s = recipe.summary(res, cfg)
    print(s.to_string())
    print(f"recipe study: {time.perf_counter() - t0:.0f} s (heads found cached cost nothing; "
          f"training time of every head: {res['seconds'].sum() / 60:.1f} min)")


if __name__ == "__main__":
    main()
