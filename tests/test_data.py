import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from allrep.data import dataset as data
from allrep.errors import AllrepError


def test_manifest_counts_and_labels():
    idb1, idb2 = data.manifest("IDB1"), data.manifest("IDB2")
    assert len(idb1) == 108 and len(idb2) == 260 and len(data.manifest("combined")) == 368
    assert sum(it.label for it in idb1) == 49 and sum(it.label for it in idb2) == 130
    # camera shortcut: every 1712x1368 photograph is from an ALL patient
    small = [it for it in idb1 if (it.width, it.height) == (1712, 1368)]
    assert len(small) == 33 and all(it.label == 1 for it in small)
    assert sum(1 for it in idb2 if (it.width, it.height) != (257, 257)) == 10
    assert len(data.expected_files()) == 476


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(AllrepError, match="unknown dataset 'IDB3'"):
        data.manifest("IDB3")


def test_verify_real_copy(data_root):
    rep = data.verify(data_root)
    assert rep.ok, rep.lines()
    assert rep.counts == {"IDB1": {0: 59, 1: 49}, "IDB2": {0: 130, 1: 130}}
    assert "368 images" in rep.lines()[0]


def _linked_copy(src: Path, dst: Path) -> Path:
    for p in src.rglob("*"):
        if p.is_file():
            q = dst / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            q.symlink_to(p)
    return dst


def test_verify_names_every_problem(data_root, tmp_path):
    bad = _linked_copy(data_root, tmp_path / "bad")
    (bad / "ALL_IDB2/img/Im001_1.tif").unlink()  # removed
    j = bad / "ALL_IDB1/im/Im002_1.jpg"  # one byte changed
    b = bytearray(j.read_bytes()); j.unlink(); b[5000] ^= 0xFF; j.write_bytes(bytes(b))
    (bad / "ALL_IDB2/img/Im200_0.tif").rename(bad / "ALL_IDB2/img/Im200_1.tif")  # renamed to the other label
    g = bad / "ALL_IDB2/img/Im100_1.tif"  # unreadable
    g.unlink(); g.write_bytes(b"not an image")
    rep = data.verify(bad)
    assert not rep.ok
    assert rep.missing == ["ALL_IDB2/img/Im001_1.tif", "ALL_IDB2/img/Im200_0.tif"]
    assert rep.extra == ["ALL_IDB2/img/Im200_1.tif"]
    assert rep.mismatched == ["ALL_IDB1/im/Im002_1.jpg", "ALL_IDB2/img/Im100_1.tif"]
    assert rep.unreadable == ["ALL_IDB2/img/Im100_1.tif"]
    out = subprocess.run([sys.executable, "-m", "allrep.cli", "data", "verify", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    for name in ("Im001_1.tif", "Im002_1.jpg", "Im200_1.tif", "Im100_1.tif"):
        assert name in out.stdout


def test_missing_folder_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "allrep.cli", "data", "verify", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "ALLREP_DATA" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unreadable_image_message(tmp_path):
    p = tmp_path / "x.tif"
    p.write_bytes(b"garbage")
    with pytest.raises(AllrepError, match="unreadable image"):
        data.open_rgb(p, 32)


def test_loader_sizes_and_dtype(data_root):
    items = data.manifest("IDB1")[:2] + [it for it in data.manifest("IDB2") if it.width != 257][:1]
    x = data.load_images(items, 97, data_root)
    assert x.shape == (3, 97, 97, 3) and x.dtype == np.uint8
    assert 20 < x.mean() < 235  # real pixels, not zeros


def test_xyc(data_root):
    xy = read_xyc("Im001_1", data_root)
    assert xy.shape[1] == 2 and len(xy) > 0
    assert len(read_xyc("Im100_0", data_root)) == 0


def test_runner_refuses_a_corrupted_copy(data_root, tmp_path, monkeypatch):
    bad = _linked_copy(data_root, tmp_path / "bad")
    j = bad / "ALL_IDB2/img/Im010_1.tif"
    b = bytearray(j.read_bytes()); j.unlink(); b[-1] ^= 0xFF; j.write_bytes(bytes(b))
    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path / "scratch"))
    env = dict(os.environ, ALLREP_DATA=str(bad), ALLREP_SCRATCH=str(tmp_path / "scratch"))
    out = subprocess.run([sys.executable, "-m", "allrep.cli", "run", "--profile", "smoke", "--steps", "10"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "Im010_1.tif" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "scratch").exists() or not list((tmp_path / "scratch").rglob("*.ipynb"))


def read_xyc(stem: str, root=None):
    """Blast centroids of ALL-IDB1 image ``stem`` as an int array (k, 2) of (x, y)."""
    import numpy as np

    root = data.data_root(root)
    top, sub, ext = data.XYC_DIR
    path = root / top / sub / f"{stem}{ext}"
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array([[int(float(a)), int(float(b))] for a, b in rows], dtype=int).reshape(-1, 2)
