"""Final models: each backbone's ensemble trained on all images of a dataset, saved for prediction.

``allrep train-final --profile paper --dataset IDB2`` trains, per backbone, the profile's recipe on
every image of the dataset except an optional held-out set of photograph groups. A validation part is
carved by photograph group (as in every split) for early stopping, for the hyperparameter search
(one nested search on this split, :mod:`allrep.train.tuning`), for the calibration maps (chosen per backbone
and for the fusion as in step 40, :func:`allrep.evaluate.calibration.choose_map`) and for the referral threshold
(log-odds confidence, :func:`allrep.evaluate.calibration.referral_threshold`). Everything prediction needs is saved in the cache (never in git):

``<cache>/final/<profile>-<dataset>/``
    ``manifest.json`` (profile digest, weights identity, hyperparameters, temperatures, threshold,
    held-out ids with the members' in-training probabilities) and per backbone
    ``<backbone>/reduction.npz`` and ``<backbone>/member_<m>.keras``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from allrep.cache import folder
from allrep.errors import AllrepError
from allrep.evaluate.calibration import choose_map, referral_threshold
from allrep.io import atomic_write_json
from allrep.profile import Profile
from allrep.repro import seed_for
from allrep.train import FINAL_SECTIONS
from allrep.train.features import for_backbone, split_arrays


def model_dir(cfg: Profile, dataset: str) -> Path:
    return folder("final", f"{cfg.name}-{dataset}")


def final_split(dataset: str, cfg: Profile, hold_out=()) -> pd.DataFrame:
    """Every image of ``dataset`` with a role: test (the held-out photograph groups), val (carved by group
    from the rest) or train."""
    from allrep.data.splits import grouped_pick, items_frame

    df = items_frame(dataset)
    hold = df["group"].isin(set(hold_out))
    rest = df[~hold]
    val = grouped_pick(rest, "group", cfg.splits.val_fraction, np.random.default_rng([cfg.seed, 9]))
    role = np.where(hold, "test", np.where(df["id"].isin(val), "val", "train"))
    return df.assign(role=role)


def train_final(cfg: Profile, dataset: str, hold_out=(), decided: dict | None = None) -> Path:
    """Train and save the final models of ``dataset`` (see the module doc); returns their folder.

    ``decided``: backbone -> (head, training, recipe name, where) already chosen inside an outer split whose test
    part holds every held-out image (step 70: the split its held-out groups are drawn from), so none of those
    decisions saw them; the recipe choice and the search are then reused, not run again, and only the members
    train. Without it (``allrep train-final``), both run on this split's validation part."""
    from allrep.train import members, tuning
    from allrep.train.heads import Reduction
    from allrep.train.stacked import to_head

    t0 = time.perf_counter()
    split = final_split(dataset, cfg, hold_out)
    out = model_dir(cfg, dataset)
    M = cfg.ensemble.members
    manifest = dict(profile=cfg.name, digest=cfg.digest(*FINAL_SECTIONS), dataset=dataset, members=M,
                    held_out=sorted(split.loc[split["role"] == "test", "id"]), backbones={})
    val_ids = list(split.loc[split["role"] == "val", "id"])
    y_val = split.loc[split["role"] == "val", "label"].to_numpy()
    g_val = list(split.loc[split["role"] == "val", "group"])
    u = cfg.uncertainty
    calibrate = lambda p: choose_map(y_val, p, g_val, u.calibration_folds, cfg.seed, u.temperature_prior_sd)  # noqa: E731
    has_test = bool(len(manifest["held_out"]))
    p_val = {}
    for bb in cfg.use_backbones:
        fc = for_backbone(cfg, bb)
        name = f"final-{cfg.name}-{dataset}-{bb}"
        arch, ts, recipe_name = cfg.head, cfg.training, "profile"
        if decided:
            arch, ts, recipe_name, hp_source = decided[bb]
        elif cfg.recipe_choice.enabled:  # the recipe chosen inside this split too, on its validation part
            from allrep.train.recipe import choose_in_split

            choice = choose_in_split(cfg, bb, split, seed_for(cfg.seed, "final-recipe", dataset, bb))
            arch, ts = choice["head"], choice["training"]
            recipe_name = choice["recipe"]
            name += f"-{recipe_name}"
        a = split_arrays(fc, split, cfg.features.views, roles=("train",))
        red = Reduction.fit(a["train"][0], ts.pool, ts.pca, ts.whiten)  # what the engine fits; saved for prediction
        seq_len, channels = red(a["train"][0][:1]).shape[1:]
        del a
        if decided:
            hp = arch
        else:
            found = {name: (bb, split, seed_for(cfg.seed, "final-tune", dataset, bb))}
            search = tuning.tune_splits({name: found[name][2]}, arch, ts, cfg.tuning.trials, cfg.tuning.initial_points,
                                        folder("tuning"), tuning.Trials(cfg, found, ts))
            hp, hp_source = search[name]["best"], "searched on this split's validation part"
        seeds = [seed_for(cfg.seed, "final", dataset, bb, m) for m in range(M)]
        res = members.fetch(cfg, [members.plan(bb, split, hp, ts, s, test=has_test, keep_weights=True) for s in seeds])
        dest = out / bb
        dest.mkdir(parents=True, exist_ok=True)
        np.savez(dest / "reduction.npz", **red.state())
        for m, r in enumerate(res):
            to_head(r["weights"], hp, seq_len, channels, name=f"{bb}_member_{m}").save(dest / f"member_{m}.keras")
        p_val[bb] = np.mean([r["p_val"] for r in res], axis=0)
        cal = calibrate(p_val[bb])
        manifest["backbones"][bb] = dict(
            weights=fc.w.to_dict(), hp=hp.to_dict(), hp_source=hp_source, recipe=recipe_name, seq_len=int(seq_len),
            channels=int(channels),
            temperature=cal["T"], calibration_map=cal["map"], seeds=seeds,
            epochs_run=[int(r["epochs_run"]) for r in res], best_epoch=[int(r["best_epoch"]) for r in res],
            held_out_members=[[float(x) for x in r["p_test"]] for r in res] if has_test else [])
    fused_val = np.mean([p_val[bb] for bb in cfg.use_backbones], axis=0)
    cal = calibrate(fused_val)
    cov = u.referral_coverage
    manifest.update(fused_temperature=cal["T"], fused_calibration_map=cal["map"], referral_coverage=cov,
                    referral_threshold=referral_threshold(fused_val, cal["T"], cov), referral_in="log-odds",
                    val_ids=val_ids, seconds=round(time.perf_counter() - t0, 1))
    atomic_write_json(out / "manifest.json", manifest)  # written last: its presence marks a complete model set
    return out


def load_manifest(cfg: Profile, dataset: str) -> dict:
    """The saved model set's manifest; a missing or stale set is an error naming the command that builds it."""
    path = model_dir(cfg, dataset) / "manifest.json"
    build = f"allrep train-final --profile {cfg.name} --dataset {dataset}"
    if not path.is_file():
        raise AllrepError(f"no final models for profile {cfg.name!r} and dataset {dataset}: build them with `{build}`")
    m = json.loads(path.read_text())
    if m["digest"] != cfg.digest(*FINAL_SECTIONS):
        raise AllrepError(f"the final models of {cfg.name}/{dataset} were trained with other settings than the "
                          f"profile now has (stale): rebuild them with `{build}`")
    return m
