"""The project's git history, read-only: the one helper the record and the book use to ask git (the ledger's
backfill, the seal's commit evidence, the replay's worktree, the book's amendment and drift tables). The commit
recorder of results is :func:`allrep.repro.git_commit`."""
from __future__ import annotations

import subprocess
from pathlib import Path

from allrep.profile import PROJECT_ROOT


def git(*args: str, root: Path | str = PROJECT_ROOT, binary: bool = False):
    """``git args...`` in ``root``; its standard output (bytes with ``binary``). Raises CalledProcessError."""
    out = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=not binary)
    return out.stdout
