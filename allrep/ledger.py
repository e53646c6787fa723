"""The test-set ledger: every scoring of a test part in the committed history, one row each.

A *look* at a test part is a commit that changed the test predictions of a model on it. The ledger
reads the project's git history (``git log`` / ``git show`` of the committed results: nothing else
records which predictions were once committed) and, for every commit and every test-prediction file the
registry declares, every outer split whose predictions differ from all earlier ones gets a row
``look = "new"``; a commit that rewrote byte-identical predictions for a split is a ``"repeat"``, not a
new look. Split sets are identified by the profile's split seed at that commit and a hash of the test
ids, so a fresh pre-registered seed starts a fresh count. Rows: dataset, protocol, split_seed, split_set,
repeat, models, commit, date, k, n, look.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from .metrics import predict_label
from .profile import PROJECT_ROOT

# committed test-prediction files (paper profile): a glob under results/ -> how the models are named
TEST_FILES = {
    "probabilities/*_*.csv": "ensemble",
    "scratch/*_*.csv": "from scratch",
}
_SKIP = ("_val.csv", "_members.csv")
DEVELOPMENT_SEEDS = (20241018,)  # the split seed of every run before the pre-registration: development splits
COLUMNS = ["dataset", "protocol", "split_seed", "split_set", "repeat", "models", "commit", "date", "k", "n", "look"]


def _git(*args, root: Path = PROJECT_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def _files_at(commit: str, root: Path) -> list[str]:
    names = _git("ls-tree", "-r", "--name-only", commit, "--", "results/", root=root).split()
    out = []
    for n in names:
        rel = n[len("results/"):]
        if any(rel.endswith(s) for s in _SKIP):
            continue
        if any(Path(rel).match(g) for g in TEST_FILES):
            out.append(n)
    return out


def _model_name(path: str) -> str:
    stem = Path(path).stem
    ds, rest = stem.split("_", 1)
    if path.startswith("results/scratch/"):
        return f"{rest} from scratch"
    return f"{rest[: -len('_plain')]} plain head" if rest.endswith("_plain") else f"{rest} ensemble"


def _seed_at(commit: str, root: Path) -> int | None:
    try:
        return int(yaml.safe_load(_git("show", f"{commit}:profiles/paper.yaml", root=root))["seed"])
    except (subprocess.CalledProcessError, KeyError, TypeError, ValueError):
        return None


def looks(root: Path = PROJECT_ROOT) -> pd.DataFrame:
    """The ledger (module doc) from the git history of ``root``; oldest commit first."""
    commits = _git("log", "--reverse", "--format=%H %cI", "--", "results/probabilities", "results/scratch",
                   root=root).split("\n")
    seen: dict[tuple, str] = {}  # (file, split set, repeat) -> hash of its last predictions
    rows = []
    for line in filter(None, commits):
        commit, date = line.split(" ", 1)
        seed = _seed_at(commit, root)
        for path in _files_at(commit, root):
            try:
                df = pd.read_csv(io.StringIO(_git("show", f"{commit}:{path}", root=root)))
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if not {"protocol", "repeat", "dataset", "id", "label", "p_all"} <= set(df.columns):
                continue
            for (ds, protocol, rep), g in df.groupby(["dataset", "protocol", "repeat"], sort=True):
                ids = sorted(g["id"].unique())
                split_set = hashlib.sha256(f"{seed}|{protocol}|{rep}|{','.join(ids)}".encode()).hexdigest()[:10]
                blob = g.sort_values(list(g.columns)).to_csv(index=False).encode()
                h = hashlib.sha256(blob).hexdigest()
                key = (path, split_set, int(rep))
                if seen.get(key) == h:
                    look = "repeat"
                elif key in seen or h not in seen.values():
                    look = "new"
                else:
                    look = "repeat"
                seen[key] = h
                mean = g.groupby(["id", "label"])["p_all"].mean().reset_index()
                k = int((predict_label(mean["p_all"]) == mean["label"].to_numpy()).sum())
                rows.append(dict(dataset=ds, protocol=protocol, split_seed=seed, split_set=split_set, repeat=int(rep),
                                 models=_model_name(path), commit=commit[:12], date=date, k=k, n=len(mean), look=look))
    return pd.DataFrame(rows, columns=COLUMNS)


def counts(ledger: pd.DataFrame, development_seeds=()) -> pd.DataFrame:
    """Per dataset, protocol and split seed: outer splits, new looks at each split's test part (the most
    any split got, over all models), repeats, and a label (*development* for ``development_seeds``)."""
    rows = []
    for (ds, protocol, seed), g in ledger.groupby(["dataset", "protocol", "split_seed"], sort=True, dropna=False):
        new = g[g["look"] == "new"]
        per_split = new.groupby(["repeat", "models"]).size()
        rows.append(dict(dataset=ds, protocol=protocol, split_seed=seed, outer_splits=int(g["repeat"].nunique()),
                         commits=int(new["commit"].nunique()), max_looks_per_split_and_model=int(per_split.max()) if len(per_split) else 0,
                         repeats=int((g["look"] == "repeat").sum()),
                         label="development" if seed in set(development_seeds) else "confirmatory"))
    return pd.DataFrame(rows)
