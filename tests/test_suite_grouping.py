"""The suite's own scheduling: ``make test`` runs on pytest-xdist with ``--dist loadgroup``, and two groups rely on
it (tests/conftest.py): "smoke-writes", whose tests write into the one smoke run's folders and must never run at
the same time, and "final-models", whose session fixture trains final models once, not once per worker. A pytest and
xdist pair that drops the groups (pytest 9.2 with xdist 3.8 does) passes every test while racing on those folders
and training the fixture twice."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts a pytest with two workers: about 12 s


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(
        "import os\nimport pytest\n\n"
        "pytestmark = pytest.mark.xdist_group('together')\n\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_one(i, tmp_path_factory):\n"
        "    out = tmp_path_factory.getbasetemp().parent.parent / f'ran_{i}'\n"
        "    out.write_text(os.environ['PYTEST_XDIST_WORKER'])\n")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist",
                          "loadgroup", "--basetemp", str(tmp_path / "base"), "-c", os.devnull, "--rootdir",
                          str(tmp_path), str(tmp_path / "test_grouped.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    workers = {(tmp_path / f"ran_{i}").read_text() for i in range(6)}
    assert len(workers) == 1, f"the group's tests ran on {sorted(workers)}: --dist loadgroup ignored xdist_group"
