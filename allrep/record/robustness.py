"""The exploratory robustness analysis of the registered verdicts: its plan, its files and its ledger rows.

The plan (``results/robustness/plan.yaml``) was committed before any universe was scored, in the commit whose
message starts with "Robustness plan"; :func:`run` refuses to score while the plan differs from that commit's.
It re-scores the registered run's committed test probabilities in every recombined universe
(:mod:`allrep.evaluate.multiverse`), writes ``multiverse.csv`` and ``what_moves.csv`` beside the plan, and
appends one ledger row per distinct scoring (heads, members, fusion set and rule) and outer split, marked
``look = "exploratory"`` and ``added = "exploratory"``; the rule's ICC and null change no prediction and add no
scoring. Re-running writes the same files and no new rows.
"""
from __future__ import annotations

import hashlib

import pandas as pd

from allrep.errors import AllrepError
from allrep.evaluate.multiverse import REGISTERED, multiverse, scorings, what_moves
from allrep.io import atomic_write_text
from allrep.profile import PROJECT_ROOT, load_profile
from allrep.record import history, ledger, places
from allrep.record.runs import registered
from allrep.repro import git_commit

FOLDER = places.ROBUSTNESS
PLAN = FOLDER / "plan.yaml"
PLAN_REL = PLAN.relative_to(PROJECT_ROOT).as_posix()  # where the plan is committed
PLAN_MESSAGE = history.ROBUSTNESS_PLAN_MESSAGE
MULTIVERSE, WHAT_MOVES, MISSING = "multiverse.csv", "what_moves.csv", "missing.csv"  # beside the plan
EXPLORATORY = "exploratory"
HEADS = {"search": "", "untuned": "_plain"}  # tuning level -> the registered run's probabilities file suffix


def plan_commit(root=PROJECT_ROOT) -> str | None:
    """The commit that added the plan (its message starts with :data:`PLAN_MESSAGE`); None when there is none."""
    return history.plan_commit(PLAN_REL, PLAN_MESSAGE, root)


def load_plan(root=PROJECT_ROOT) -> dict:
    """The plan, refused when it was never committed under its message or has changed since."""
    return history.committed_plan(PLAN_REL, PLAN_MESSAGE, "scoring any universe", PLAN, root)


def inputs(plan: dict, trained: dict | None = None):
    """The test probabilities per (dataset, training, tuning): the registered run's (training "registered") and
    every trained universe's whose heads are trained (:mod:`allrep.record.universes`); and the test rows per
    dataset."""
    from allrep.record import universes as trained_universes

    cfg = load_profile(registered().profile)
    out = places.output_dir(cfg)
    backbones = sorted({b for fs in plan["recombined"]["fusion_set"] for b in fs})
    probs, tests = {}, {}
    for ds in plan["claims"]:
        for tuning, suffix in HEADS.items():
            df = pd.concat([pd.read_csv(out / "probabilities" / f"{ds}_{bb}{suffix}.csv") for bb in backbones],
                           ignore_index=True)
            probs[(ds, REGISTERED, tuning)] = df[df["protocol"] == plan["protocol"]]
        for u in (trained or {}).get("universes", []):
            path = trained_universes.probabilities_path(ds, u["name"])
            if u["name"] in trained["claims"].get(ds, []) and path.is_file():
                probs[(ds, u["name"], u["from"])] = pd.read_csv(path)
        split = pd.read_csv(out / "splits" / f"{ds}_{plan['protocol']}.csv")
        tests[ds] = split[split["role"] == "test"]
    return cfg, probs, tests


def missing(plan: dict, trained: dict, probs: dict) -> pd.DataFrame:
    """The trained universes a claim was given but has no heads for, and the cells the amendment cut."""
    rows = [dict(dataset=ds, universe=name, why="not trained: the budget ended before it")
            for ds in plan["claims"] for name in trained["claims"].get(ds, [])
            if not any(k[0] == ds and k[1] == name for k in probs)]
    rows += [dict(dataset="all", universe=c["name"], why=c["why"]) for c in trained.get("cut", [])]
    return pd.DataFrame(rows, columns=["dataset", "universe", "why"])


def scoring_name(training: str, tuning: str, members: int, rule: str, fusion_set: str) -> str:
    """A scoring's name in the ledger (the registered heads' rows keep the form they were first written in)."""
    heads = f"{tuning} heads" if training == REGISTERED else f"{training} heads (from {tuning})"
    return f"{EXPLORATORY}: {heads}, {members} member(s), {rule} of {fusion_set}"


def _ledger_rows(plan: dict, probs: dict, scored: dict, seed: int) -> pd.DataFrame:
    """One ledger row per distinct scoring (heads, members, fusion set, rule) and outer split."""
    from allrep.record import universes

    commit, date = git_commit(), pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    note = f"robustness analysis, plan {plan_commit()[:12]}"
    trained_note = f"{note}, trained universes' amendment {(universes.plan_commit() or '')[:12]}"
    rows = []
    for (ds, training, tuning, members, fusion_set, rule), per in scored.items():
        p = probs[(ds, training, tuning)]
        name = scoring_name(training, tuning, members, rule, fusion_set)
        for r in per.itertuples(index=False):
            rows.append(dict(dataset=ds, protocol=plan["protocol"], split_seed=seed, repeat=r.repeat,
                             split_set=ledger.split_set(seed, plan["protocol"], r.repeat, p[p["repeat"] == r.repeat]["id"].unique()),
                             models=name, commit=commit, date=date, k=r.k, n=r.n, look=EXPLORATORY,
                             digest=hashlib.sha256(f"{name}|{r.k}|{r.n}".encode()).hexdigest()[:16], added=EXPLORATORY,
                             note=note if training == REGISTERED else trained_note))
    return pd.DataFrame(rows)


def run(say=print) -> pd.DataFrame:
    """Score every recombined universe (module doc); returns the multiverse table."""
    from allrep.record import universes as trained_universes

    plan, trained = load_plan(), trained_universes.load_plan()
    cfg, probs, tests = inputs(plan, trained)
    scored = scorings(probs, plan, trained)
    mv = multiverse(scored, tests, plan, cfg.verdict, trained)
    FOLDER.mkdir(parents=True, exist_ok=True)
    atomic_write_text(FOLDER / MULTIVERSE, mv.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(FOLDER / WHAT_MOVES, what_moves(mv).to_csv(index=False))
    atomic_write_text(FOLDER / MISSING, missing(plan, trained, probs).to_csv(index=False))
    path = places.ledger_path(cfg)
    rows = _ledger_rows(plan, probs, scored, cfg.seed)
    old = ledger.read(path)
    seen = dict(zip(zip(old["models"], old["split_set"]), old["digest"]))
    moved = [(m, s) for m, s, d in zip(rows["models"], rows["split_set"], rows["digest"]) if seen.get((m, s), d) != d]
    if moved:  # the same scoring with another count: its heads changed since the ledger recorded it
        raise AllrepError(f"{len(moved)} exploratory scorings are in the ledger with other counts (first: {moved[0][0]}): "
                          "a scoring is recorded once; a changed universe is a new universe of an amended plan")
    new = rows[[(m, s) not in seen for m, s in zip(rows["models"], rows["split_set"])]]
    ledger.append(path, new)
    say(f"robustness: {len(mv)} universe rows in {places.relative(FOLDER / MULTIVERSE)}; "
        f"{len(new)} exploratory ledger rows added")
    return mv
