"""The test-set ledger, ``results/ledger.csv``: every scoring of a test part, one row each.

The runner appends to it (:func:`record`, called by :func:`allrep.runner.pipeline.run` after a step's notebooks
executed): every test-prediction file among the executed variants' declared outputs (:data:`TEST_FILES`)
gives one row per outer split, so no step can score a test part without a row. A scoring whose
predictions differ from every earlier row of the same model and split is a ``look = "new"``; a
re-execution that wrote byte-identical predictions is a ``"repeat"``, not a new look. Split sets are
identified by the profile's split seed and a hash of the test ids, so a fresh pre-registered seed starts
a fresh count. The rows from before the ledger existed were backfilled from the git history
(:func:`looks`: ``git log`` / ``git show`` of the committed results). Rows: dataset, protocol,
split_seed, split_set, repeat, models, commit, date, k, n, look, digest.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from allrep.evaluate.metrics import predict_label
from allrep.profile import PROJECT_ROOT
from allrep.record.history import git
from allrep.record.runs import committed, development, registered
from allrep.repro import git_commit

# committed test-prediction files (paper profile): a glob under results/ -> how the models are named
TEST_FILES = {
    "probabilities/*_*.csv": "ensemble",
    "scratch/*_*.csv": "from scratch",
    "using/*_held_out.csv": "final models, fused",
}
_SKIP = ("_val.csv", "_members.csv")
COLUMNS = ["dataset", "protocol", "split_seed", "split_set", "repeat", "models", "commit", "date", "k", "n", "look",
           "digest"]
# Rows recorded after the fact carry ``added = "backfill"`` and a ``note`` saying where their evidence is; the rows
# the runner and the first backfill wrote leave both empty. A sealed run's ledger digest covers the rows that are
# not backfilled (allrep.record.seal), so the record of a sealed run can be completed without being changed.
AMENDMENT_COLUMNS = ["added", "note"]
HELD_OUT = "final"  # the protocol column of step 70's scorings: final models on their held-out photograph groups
# The look (and ``added``) of a timing-only run's scorings (profile ``timing``, scripts/benchmark.py): counted, on
# their own split seed, and never reported
BENCHMARK = "benchmark"


def _files_at(commit: str, root: Path) -> list[str]:
    names = git("ls-tree", "-r", "--name-only", commit, "--", "results/", root=root).split()
    # the development run's results only: another committed run's folder inside results/ is recorded by the runner
    others = tuple(f"{r.results}/" for r in committed() if not r.development)
    return [n for n in names if not n.startswith(others) and is_test_file(n[len("results/"):])]


def _model_name(path: str) -> str:
    stem = Path(path).stem
    ds, rest = stem.split("_", 1)
    if "/scratch/" in f"/{path}":
        return f"{rest} from scratch"
    if "/using/" in f"/{path}":
        return TEST_FILES["using/*_held_out.csv"]
    return f"{rest[: -len('_plain')]} plain head" if rest.endswith("_plain") else f"{rest} ensemble"


def _seed_of(profile: str, commit: str, root: Path) -> int | None:
    try:
        return int(yaml.safe_load(git("show", f"{commit}:profiles/{profile}.yaml", root=root))["seed"])
    except (subprocess.CalledProcessError, KeyError, TypeError, ValueError):
        return None


def _seed_at(commit: str, root: Path) -> int | None:
    return _seed_of(development().profile, commit, root)


def is_test_file(rel: str) -> bool:
    """A results path (relative to the results folder) that holds test predictions (:data:`TEST_FILES`)."""
    return not any(rel.endswith(x) for x in _SKIP) and any(Path(rel).match(g) for g in TEST_FILES)


def split_set(seed, protocol, rep, ids) -> str:
    return hashlib.sha256(f"{seed}|{protocol}|{rep}|{','.join(sorted(ids))}".encode()).hexdigest()[:10]


def _digest(g: pd.DataFrame) -> str:
    return hashlib.sha256(g.sort_values(list(g.columns)).to_csv(index=False).encode()).hexdigest()[:16]


def scorings(df: pd.DataFrame, rel: str, seed) -> list[dict]:
    """One row per outer split of a test-prediction file's frame (``rel`` relative to the results folder):
    the split set, the model, k/n of its ensemble mean and a digest of the split's predictions (rows sorted,
    so the file's row order does not matter). A from-scratch frame gives one row per recipe and split (the
    model is named with its recipe); step 70's held-out frame one row (protocol :data:`HELD_OUT`, its fused
    calls). Frames without the prediction columns give none."""
    if {"id", "label", "predicted", "p_all_fused"} <= set(df.columns):
        ds = Path(rel).name.split("_", 1)[0]
        return [dict(dataset=ds, protocol=HELD_OUT, split_seed=seed, split_set=split_set(seed, HELD_OUT, 0, df["id"]),
                     repeat=0, models=_model_name("results/" + rel), k=int((df["predicted"] == df["label"]).sum()),
                     n=len(df), digest=_digest(df))]
    if not {"protocol", "repeat", "dataset", "id", "label", "p_all"} <= set(df.columns):
        return []
    keys = ["recipe", "dataset", "protocol", "repeat"] if "recipe" in df.columns else ["dataset", "protocol", "repeat"]
    rows = []
    for key, g in df.groupby(keys, sort=True):
        recipe, (ds, protocol, rep) = (key[0], key[1:]) if len(keys) == 4 else (None, key)
        mean = g.groupby(["id", "label"])["p_all"].mean().reset_index()
        k = int((predict_label(mean["p_all"]) == mean["label"].to_numpy()).sum())
        models = _model_name("results/" + rel) + ("" if recipe is None else f" ({recipe})")
        rows.append(dict(dataset=ds, protocol=protocol, split_seed=seed, split_set=split_set(seed, protocol, rep, g["id"].unique()),
                         repeat=int(rep), models=models, k=k, n=len(mean), digest=_digest(g)))
    return rows


def _mark(rows: list[dict], earlier: pd.DataFrame) -> list[dict]:
    """look = "new" for a digest that no earlier row of the same model and split had, else "repeat"."""
    seen = set(zip(earlier["models"], earlier["split_set"], earlier["repeat"].astype(int), earlier["digest"])) \
        if len(earlier) else set()
    for r in rows:
        key = (r["models"], r["split_set"], r["repeat"], r["digest"])
        r["look"] = "repeat" if key in seen else "new"
        seen.add(key)
    return rows


def looks(root: Path = PROJECT_ROOT) -> pd.DataFrame:
    """The ledger (module doc) from the git history of ``root``, oldest commit first: the backfill."""
    commits = git("log", "--reverse", "--format=%H %cI", "--", "results/probabilities", "results/scratch",
                   root=root).split("\n")
    rows: list[dict] = []
    for line in filter(None, commits):
        commit, date = line.split(" ", 1)
        seed = _seed_at(commit, root)
        for path in _files_at(commit, root):
            try:
                df = pd.read_csv(io.StringIO(git("show", f"{commit}:{path}", root=root)))
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            new = [dict(r, commit=commit[:12], date=date) for r in scorings(df, path[len("results/"):], seed)]
            rows += _mark(new, pd.DataFrame(rows, columns=COLUMNS))
    return pd.DataFrame(rows, columns=COLUMNS)


# Looks whose predictions were never committed, known from the commit that reports them (its message).
MESSAGE_LOOKS = (
    dict(commit="1d0208e6b4ed", dataset="IDB2", protocol="paper", repeat=0, n=52,
         k={"efficientnetb3 from scratch (ours)": 47, "efficientnetb3 from scratch (naive)": 26}),
)


def _changed(commit: str, paths: list[str], root: Path) -> list[str]:
    return git("diff-tree", "--no-commit-id", "--name-only", "-r", "--root", commit, "--", *paths, root=root).split()


def amendments(existing: pd.DataFrame, root: Path = PROJECT_ROOT) -> pd.DataFrame:
    """The scorings the ledger lacks, recorded after the fact (``added = "backfill"``, oldest first):

    * every committed version of a from-scratch file, per recipe (the first rows averaged the two recipes);
    * every committed version of step 70's held-out file (protocol :data:`HELD_OUT`), in each committed run;
    * the looks of :data:`MESSAGE_LOOKS`, whose predictions were not committed (no digest; the note says so).

    Rows ``existing`` already holds (same model, split, digest and commit) are not repeated, so running it
    twice adds nothing."""
    have = set(zip(existing.get("models", []), existing.get("split_set", []), existing.get("digest", []),
                   existing.get("commit", [])))
    rows: list[dict] = []
    for run in committed():
        folders = [f"{run.results}/scratch", f"{run.results}/using"]
        log = git("log", "--reverse", "--format=%H %cI", "--", *folders, root=root).split("\n")
        for line in filter(None, log):
            commit, date = line.split(" ", 1)
            seed = _seed_of(run.profile, commit, root)
            for path in _changed(commit, folders, root):
                rel = path[len(run.results) + 1:]
                if rel.count("/") != 1 or not is_test_file(rel):
                    continue
                try:
                    df = pd.read_csv(io.StringIO(git("show", f"{commit}:{path}", root=root)))
                except (pd.errors.ParserError, pd.errors.EmptyDataError, subprocess.CalledProcessError):
                    continue
                new = [dict(r, commit=commit[:12], date=date, added="backfill",
                            note=f"{path} at this commit; recorded after the fact")
                       for r in scorings(df, rel, seed) if r["protocol"] == HELD_OUT or r["models"].endswith(")")]
                rows += _mark(new, pd.concat([existing, pd.DataFrame(rows, columns=COLUMNS)]))
    for m in MESSAGE_LOOKS:
        full = git("rev-parse", m["commit"], root=root).strip()
        date = git("show", "-s", "--format=%cI", full, root=root).strip()
        seed = _seed_of(development().profile, full, root)
        same = existing[of_seed(existing, seed) & (existing["dataset"] == m["dataset"])
                        & (existing["protocol"] == m["protocol"]) & (existing["repeat"].astype(int) == m["repeat"])]
        for models, k in m["k"].items():
            rows.append(dict(dataset=m["dataset"], protocol=m["protocol"], split_seed=seed,
                             split_set=same["split_set"].iloc[0], repeat=m["repeat"], models=models,
                             commit=m["commit"], date=date, k=k, n=m["n"], look="new", digest="",
                             added="backfill", note=f"reported in commit {m['commit']}'s message; predictions "
                                                    "not committed"))
    out = pd.DataFrame(rows, columns=COLUMNS + AMENDMENT_COLUMNS)
    key = list(zip(out["models"], out["split_set"], out["digest"], out["commit"]))
    return out[[k not in have for k in key]].reset_index(drop=True)


def read(ledger_path: Path) -> pd.DataFrame:
    """The ledger at ``ledger_path`` (an empty one with the columns when there is none yet)."""
    if not Path(ledger_path).is_file():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(ledger_path, dtype={"commit": str, "digest": str, "split_set": str, "added": str, "note": str},
                       keep_default_na=False, na_values={"k": [""], "n": [""]})


def append(ledger_path: Path, rows: pd.DataFrame) -> None:
    """Append ``rows`` to the ledger at ``ledger_path``, atomically (the one writer of the file)."""
    from allrep.io import atomic_write_text

    if not len(rows):
        return
    both = pd.concat([read(ledger_path), rows], ignore_index=True)
    both = both[COLUMNS + [c for c in both.columns if c not in COLUMNS]]
    Path(ledger_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ledger_path, both.to_csv(index=False))


def record(ledger_path: Path, results: Path, written: list[Path], seed: int, root: Path = PROJECT_ROOT) -> pd.DataFrame:
    """Append a row per outer split of every test-prediction file in ``written`` (paths under ``results``)
    to the ledger at ``ledger_path`` (atomically); returns the rows appended."""
    earlier = read(ledger_path)
    commit, date = git_commit(root), pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    rows: list[dict] = []
    for path in sorted(written):
        rel = path.relative_to(results).as_posix()
        if is_test_file(rel) and path.is_file():
            new = [dict(r, commit=commit, date=date) for r in scorings(pd.read_csv(path), rel, seed)]
            rows += _mark(new, pd.concat([earlier, pd.DataFrame(rows, columns=COLUMNS)]))
    append(ledger_path, pd.DataFrame(rows, columns=COLUMNS))
    return pd.DataFrame(rows, columns=COLUMNS)


def as_benchmark(rows: pd.DataFrame, note: str) -> pd.DataFrame:
    """A timing-only run's rows (its own scratch ledger) as rows of the project's ledger: look and ``added``
    :data:`BENCHMARK`, with ``note`` saying where they come from. They keep their split seed (the timing
    profile's), so no run's counts and no seal include them."""
    out = rows.copy()
    out["look"], out["added"], out["note"] = BENCHMARK, BENCHMARK, note
    return out


def of_seed(ledger: pd.DataFrame, seed: int) -> pd.Series:
    """Which rows of ``ledger`` score splits drawn with ``seed`` (a run's rows: each run has its own split seed),
    as a boolean mask; the column is read as text or as numbers alike."""
    return ledger["split_seed"].astype(int) == int(seed)


def counts(ledger: pd.DataFrame, development_seeds=()) -> pd.DataFrame:
    """Per dataset, protocol and split seed: outer splits, new looks at each split's test part (the most
    any split got, over all models), repeats, rows recorded after the fact, exploratory and benchmark rows, and a
    label (the development run's for ``development_seeds``, "benchmark" for a seed only timing runs scored, else the
    registered run's)."""
    rows = []
    for (ds, protocol, seed), g in ledger.groupby(["dataset", "protocol", "split_seed"], sort=True, dropna=False):
        new = g[g["look"] == "new"]
        per_split = new.groupby(["repeat", "models"]).size()
        rows.append(dict(dataset=ds, protocol=protocol, split_seed=seed, outer_splits=int(g["repeat"].nunique()),
                         commits=int(new["commit"].nunique()), max_looks_per_split_and_model=int(per_split.max()) if len(per_split) else 0,
                         repeats=int((g["look"] == "repeat").sum()),
                         recorded_after_the_fact=int(g["added"].eq("backfill").sum()) if "added" in g.columns else 0,
                         exploratory=int(g["look"].eq("exploratory").sum()), benchmark=int(g["look"].eq(BENCHMARK).sum()),
                         label=development().label if seed in set(development_seeds)
                         else BENCHMARK if g["look"].eq(BENCHMARK).all() else registered().label))
    return pd.DataFrame(rows)
