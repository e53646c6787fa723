"""Backfill ``results/ledger.csv`` from the git history.

* ``--amend`` (the usual call): append the scorings the ledger lacks (:func:`allrep.record.ledger.amendments`:
  from-scratch files per recipe, step 70's held-out files, looks reported only in a commit message), marked
  ``added = backfill``; a second call adds nothing. A sealed run's record is not changed: its seal covers the
  rows it was sealed with.
* ``--force``: rebuild the file from the history alone (:func:`allrep.record.ledger.looks`), dropping the runner's
  rows; only for a project that never kept a ledger.
"""
import sys

from allrep.io import atomic_write_text
from allrep.profile import load_profile
from allrep.record import ledger, runs
from allrep.runner.registry import other_output

if __name__ == "__main__":
    path = other_output("ledger", load_profile("paper"))
    if sys.argv[1:] == ["--amend"]:
        new = ledger.amendments(ledger.read(path))
        ledger.append(path, new)
        print(f"{path}: {len(new)} rows appended")
        if len(new):
            print(new.drop(columns=["note", "date"]).to_string(index=False))
        sys.exit(0)
    if path.is_file() and sys.argv[1:] != ["--force"]:  # the runner's rows (every run since) are not in git's history
        sys.exit(f"{path} exists and holds the runner's rows, which a backfill from git would drop: nothing written "
                 f"(--amend appends what it lacks; --force rebuilds it from the history alone)")
    rows = ledger.looks()
    atomic_write_text(path, rows.to_csv(index=False))
    print(f"{path}: {len(rows)} rows from {rows['commit'].nunique()} commits")
    print(ledger.counts(rows, runs.development_seeds()).to_string(index=False))
