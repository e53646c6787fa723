"""Backfill ``results/ledger.csv`` from the git history (:func:`allrep.record.ledger.looks`): the scorings of test
parts committed before the runner kept the ledger. Run once; the runner appends from then on."""
import sys

from allrep.io import atomic_write_text
from allrep.profile import load_profile
from allrep.record import ledger, runs
from allrep.runner.registry import other_output

if __name__ == "__main__":
    path = other_output("ledger", load_profile("paper"))
    if path.is_file() and sys.argv[1:] != ["--force"]:  # the runner's rows (every run since) are not in git's history
        sys.exit(f"{path} exists and holds the runner's rows, which a backfill from git would drop: nothing written "
                 f"(--force rebuilds it from the history alone)")
    rows = ledger.looks()
    atomic_write_text(path, rows.to_csv(index=False))
    print(f"{path}: {len(rows)} rows from {rows['commit'].nunique()} commits")
    print(ledger.counts(rows, runs.development_seeds()).to_string(index=False))
