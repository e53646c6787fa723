"""The trained universes of the exploratory robustness analysis: new heads on the registered run's own splits.

Amendment 1 of the robustness plan (``results/robustness/plan_trained.yaml``, committed under a message starting
"Robustness plan" before any of these heads was trained) fixes every trained universe: the registered pipeline,
or its plain reference (``from: untuned``), with ONE change: the training section (``training:``: the pooling of
the cached map, the channel reduction), the head (``head:``: the learned projection), the training views
(``views:``) or the members' seeds (``seed_replicate:``). Everything the registered run decided inside a split
(its recipe choice, its search's tuned head: the registered run's step 20 tables ``tuning/best_*.csv``) and every member's seed
are reused, so a universe differs from the registered run by its change only: with no change, its plans are the
registered members' plans, cache key for cache key (a test).

Heads are trained by the member engine (:mod:`allrep.train.members`: cached one by one, resumable); each universe
and claim writes its members' test probabilities (``trained/<claim>_<universe>.csv``, the registered run's columns)
and its time (``trained_timings.json``). Scoring them is :mod:`allrep.record.robustness`'s.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace

import pandas as pd

from allrep.cache import census
from allrep.errors import AllrepError
from allrep.evaluate.scores import PROB_COLUMNS, member_frame
from allrep.io import atomic_write_json, atomic_write_text
from allrep.profile import PROJECT_ROOT, Head, Profile, Training, load_profile, load_section
from allrep.record import history, places
from allrep.record.runs import registered

FOLDER = places.ROBUSTNESS
PLAN = FOLDER / "plan_trained.yaml"
PLAN_REL = PLAN.relative_to(PROJECT_ROOT).as_posix()
TRAINED = places.TRAINED_UNIVERSES
TIMINGS = FOLDER / "trained_timings.json"
BASES = ("search", "untuned")  # a trained universe starts from the registered ensembles or their plain reference


def plan_commit(root=PROJECT_ROOT) -> str | None:
    """The commit of the amendment in force: the last that changed it (each such commit's message starts with
    the plan's message; a silent change is refused); None when none did."""
    return history.plan_commit(PLAN_REL, history.ROBUSTNESS_PLAN_MESSAGE, root, last=True)


KEYS = {"name", "from", "training", "head", "views", "seed_replicate"}  # what a trained universe may set


def load_plan(root=PROJECT_ROOT) -> dict:
    """The amendment, refused when it was never committed under its message or has changed since."""
    plan = history.committed_plan(PLAN_REL, history.ROBUSTNESS_PLAN_MESSAGE, "training any trained universe", PLAN, root,
                                  last=True)
    names = [u["name"] for u in plan["universes"]]
    for u in plan["universes"]:
        if set(u) - KEYS:
            raise AllrepError(f"trained universe {u.get('name')!r} sets {', '.join(sorted(set(u) - KEYS))}: a universe "
                              f"sets only {', '.join(sorted(KEYS))}")
        if u.get("from") not in BASES:
            raise AllrepError(f"trained universe {u['name']!r}: from must be one of {BASES}, not {u.get('from')!r}")
        if u.get("seed_replicate") and u["from"] != "search":
            raise AllrepError(f"trained universe {u['name']!r}: seed replicates are of the registered ensembles "
                              "(from: search)")
    for ds, listed in plan["claims"].items():
        unknown = sorted(set(listed) - set(names))
        if unknown:
            raise AllrepError(f"the trained universes' plan gives {ds} unknown universes: {', '.join(unknown)}")
    return plan


def universe(plan: dict, name: str) -> dict:
    for u in plan["universes"]:
        if u["name"] == name:
            return u
    raise AllrepError(f"unknown trained universe {name!r}: choose from {', '.join(u['name'] for u in plan['universes'])}")


def profile_for(cfg: Profile, u: dict) -> Profile:
    """The registered profile, with the universe's training views when it changes them."""
    return replace(cfg, features=replace(cfg.features, views=int(u["views"]))) if "views" in u else cfg


def changed(head: Head, ts: Training, u: dict) -> tuple[Head, Training]:
    """(head, training) with the universe's changes applied (each key checked as a profile section is)."""
    where = f"{PLAN_REL}: {u['name']}"
    if u.get("head"):
        head = load_section(Head, {**head.to_dict(), **u["head"]}, where)
    if u.get("training"):
        ts = load_section(Training, {**asdict(ts), **u["training"]}, where)
    return head, ts


def split_frames(cfg: Profile, dataset: str, protocol: str) -> list[tuple[int, pd.DataFrame]]:
    """(repeat, split frame) of the registered run's outer splits of ``dataset`` and ``protocol``."""
    split = pd.read_csv(places.output_dir(cfg) / "splits" / f"{dataset}_{protocol}.csv")
    return [(int(r), part) for r, part in split.groupby("repeat", sort=True)]


def plans(cfg: Profile, u: dict, dataset: str, backbone: str, protocol: str) -> list[tuple]:
    """(repeat, split, member, plan) of every head of universe ``u`` for one claim and backbone (module doc)."""
    from allrep.train import members
    from allrep.train.recipe import plain_settings, split_settings

    out = []
    if u["from"] == "search":
        where = f"tuning/best_{backbone}_{dataset}.csv"
        hs = split_settings(cfg, pd.read_csv(places.output_dir(cfg) / where), where)
    for r, split in split_frames(cfg, dataset, protocol):
        for m in range(cfg.ensemble.members if u["from"] == "search" else cfg.plain.members):
            if u["from"] == "search":
                head, ts = hs[(protocol, r)]
                seed = members.ensemble_seed(cfg, dataset, protocol, r, backbone, m, int(u.get("seed_replicate", 0)))
            else:
                (head, ts), seed = plain_settings(cfg), members.plain_seed(cfg, dataset, protocol, r, backbone, m)
            head, ts = changed(head, ts, u)
            out.append((r, split, m, members.plan(backbone, split, head, ts, seed)))
    return out


def cells_changed(cfg: Profile, u: dict, dataset: str, protocol: str) -> dict:
    """How many (outer split, backbone) cells the universe's change actually changes: a cell whose split's own
    recipe already has the universe's level (``base`` recipe splits under ``pca_256_whitened``) trains the
    unchanged pipeline's heads."""
    base = {"name": "base", "from": u["from"]}
    n = changed = 0
    for bb in cfg.use_backbones:
        ours = plans(profile_for(cfg, u), u, dataset, bb, protocol)
        theirs = plans(cfg, base, dataset, bb, protocol)
        for r in sorted({row[0] for row in ours}):
            a = [(p.head, p.training, p.seed) for rr, _, _, p in ours if rr == r]
            b = [(p.head, p.training, p.seed) for rr, _, _, p in theirs if rr == r]
            n += 1
            changed += a != b or "views" in u
    return dict(cells=n, cells_changed=changed)


probabilities_path = places.trained_universe_path  # the one owner of the files' names: record.places


def train(name: str, dataset: str, protocol: str, say=print) -> pd.DataFrame:
    """Train (or reuse from the cache) every head of universe ``name`` on ``dataset``; write its test
    probabilities and its time; returns the probabilities."""
    from allrep.train import members

    plan = load_plan()
    u = universe(plan, name)
    if name not in plan["claims"].get(dataset, []):
        raise AllrepError(f"the trained universes' plan does not give {dataset} the universe {name!r}")
    base = load_profile(registered().profile)
    cfg = profile_for(base, u)
    t0, at_start = time.perf_counter(), census()
    todo = {bb: plans(cfg, u, dataset, bb, protocol) for bb in base.use_backbones}
    all_plans = [p for rows in todo.values() for *_, p in rows]
    missing = members.missing(cfg, all_plans)
    key = f"heads/{dataset}/{name}"
    try:
        members.train(cfg, missing)
    except KeyboardInterrupt:  # the part an interrupted run trained is recorded, so a resumed one adds to it
        done = len(missing) - len(members.missing(cfg, all_plans))
        _record(key, heads_entry(_records().get(key), time.perf_counter() - t0, len(all_plans), len(missing), done,
                                 at_start, interrupted=True))
        raise
    frames = []
    for bb, rows in todo.items():
        for (r, split, m, _), res in zip(rows, members.fetch(cfg, [p for *_, p in rows], train_missing=False)):
            frames.append(member_frame(split[split["role"] == "test"], res["p_test"], protocol, r, dataset, bb, m))
    probs = pd.concat(frames, ignore_index=True)[PROB_COLUMNS]
    TRAINED.mkdir(parents=True, exist_ok=True)
    atomic_write_text(probabilities_path(dataset, name), probs.to_csv(index=False))
    atomic_write_json(probabilities_path(dataset, name).with_suffix(".json"),
                      dict(universe=u, amendment=plan_commit()[:12], registered_profile=base.name,
                           **cells_changed(base, u, dataset, protocol)))
    seconds = round(time.perf_counter() - t0, 1)
    if missing:
        _record(key, heads_entry(_records().get(key), seconds, len(all_plans), len(missing), len(missing), at_start))
    say(f"{dataset}/{name}: {len(all_plans)} heads ({len(missing)} trained) in {seconds:.0f} s")
    return probs


def features(dataset: str, say=print) -> None:
    """Every backbone's features of ``dataset`` in the training views, timed into the record when any was missing."""
    from allrep.data.dataset import manifest
    from allrep.train.features import for_backbone

    cfg = load_profile(registered().profile)
    for bb in cfg.use_backbones:
        t0, fc = time.perf_counter(), for_backbone(cfg, bb)
        computed = fc.ensure(list(manifest(dataset)), cfg.features.views)
        if computed:
            _record(f"features/{dataset}/{bb}", dict(seconds=round(time.perf_counter() - t0, 1), images=computed))
            say(f"{dataset}/{bb}: features of {computed} images in {time.perf_counter() - t0:.0f} s")


def heads_entry(before: dict | None, seconds: float, heads: int, missing: int, trained: int, at_start: dict,
                interrupted: bool = False) -> dict:
    """A universe's timing record after a run that found ``missing`` of its ``heads`` untrained and trained
    ``trained`` of them in ``seconds``: a run that started from none of them cached replaces the record ``before``;
    a resumed one (some were cached) adds its seconds and heads to it; an interrupted one says so (the heads it
    finished are cached, and the run that resumes adds to its record)."""
    entry = dict(seconds=round(seconds, 1), heads=heads, heads_trained=trained, cache_at_start=at_start,
                 amendment=plan_commit()[:12])
    if before and missing < heads:
        entry.update(seconds=round(before["seconds"] + seconds, 1), heads_trained=before["heads_trained"] + trained,
                     runs=before.get("runs", 1) + 1)
    if interrupted:
        entry["interrupted"] = True
    return entry


def _records() -> dict:
    return json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}


def _record(key: str, entry: dict) -> None:
    record = _records()
    record[key] = dict(entry, cpus=os.cpu_count(), load_average=round(os.getloadavg()[0], 1))  # above cpus: shared
    FOLDER.mkdir(parents=True, exist_ok=True)
    atomic_write_json(TIMINGS, dict(sorted(record.items())))


def train_all(protocol: str, datasets=None, names=None, say=print) -> None:
    """Every trained universe of the plan (or of ``names``), claim by claim in the plan's order (of ``datasets``), on
    the outer splits of ``protocol`` (the robustness plan's)."""
    plan = load_plan()
    for bad, known, what in ((datasets, plan["claims"], "claim"), (names, [u["name"] for u in plan["universes"]],
                                                                   "trained universe")):
        unknown = sorted(set(bad or ()) - set(known))
        if unknown:
            raise AllrepError(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(known)}")
    for ds, listed in plan["claims"].items():
        if datasets and ds not in datasets:
            continue
        features(ds, say)
        for name in listed:
            if not names or name in names:
                train(name, ds, protocol, say)
