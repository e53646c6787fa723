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


ROBUSTNESS_PLAN_MESSAGE = "Robustness plan"  # how a commit of the robustness plan or of an amendment begins


def plan_commit(path: str, message: str, root: Path | str = PROJECT_ROOT, last: bool = False) -> str | None:
    """The commit that added ``path`` (relative to the project) under a message starting with ``message`` or, with
    ``last``, the last commit that changed it, every one of which must start with ``message`` (a plan changes only
    by a committed amendment); None when no such commit exists. The one owner of a committed plan's commit."""
    from allrep.errors import AllrepError

    log = [line.partition(" ") for line in git("log", "--format=%H %s", "--", path, root=root).splitlines()]
    if last:
        silent = [sha[:12] for sha, _, subject in log if not subject.startswith(message)]
        if silent:
            raise AllrepError(f"{path} was changed in {', '.join(silent)} by a commit whose message does not start "
                              f"with {message!r}: every change of a plan is an amendment, committed before scoring")
        return log[0][0] if log else None
    for sha, _, subject in log[::-1]:
        if subject.startswith(message):
            return sha
    return None


def committed_plan(path: str, message: str, what: str, current: Path | None = None, root: Path | str = PROJECT_ROOT,
                   last: bool = False) -> dict:
    """The YAML plan committed at ``path`` (relative to the project; :func:`plan_commit`), read from ``current``
    (default: that path), refused in one line when it was never committed under ``message`` or differs from that
    commit; ``what`` says what it precedes."""
    import yaml

    from allrep.errors import AllrepError

    sha = plan_commit(path, message, root, last)
    if sha is None:
        raise AllrepError(f"no commit starting with {message!r} added {path}: commit the plan before {what}")
    text = Path(current or Path(root) / path).read_text()
    if git("show", f"{sha}:{path}", root=root).strip() != text.strip():
        raise AllrepError(f"{path} differs from the plan committed in {sha[:12]}: a plan is fixed before {what}: "
                          f"restore it (`git checkout {sha[:12]} -- {path}`); a different plan is a different analysis")
    return yaml.safe_load(text)
