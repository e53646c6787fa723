"""`allrep train-final` and `allrep predict` on real ALL-IDB2 images (smoke-sized, one backbone)."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

# one xdist worker runs this module, so its fixture (final models, about 80 s) is trained once, not per worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("final-models")]


@pytest.fixture(scope="session")  # kept for the session: the group's tests need not run back to back
def final(data_root, weights_dir, tmp_path_factory):
    """Final MobileNetV2 models of IDB2 trained without one photograph group, which is then predicted."""
    import os

    base = tmp_path_factory.mktemp("final")
    prof = base / "predicttest.yaml"
    prof.write_text("extends: smoke\nname: predicttest\nuse_backbones: [mobilenetv2]\n")
    env = dict(os.environ, ALLREP_CACHE=str(base / "cache"), ALLREP_DATA=str(data_root),
               ALLREP_WEIGHTS_DIR=str(weights_dir), ALLREP_QUIET="1")
    from allrep.data.splits import items_frame

    df = items_frame("IDB2")
    group = df.loc[df["id"] == "IDB2/Im001_1", "group"].iloc[0]
    out = subprocess.run([sys.executable, "-m", "allrep.cli", "train-final", "--profile", str(prof), "--dataset", "IDB2",
                          "--hold-out", group], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(env=env, profile=prof, base=base, group=group, ids=sorted(df.loc[df["group"] == group, "id"]))


def _run(final, *args):
    return subprocess.run([sys.executable, "-m", "allrep.cli", "predict", "--profile", str(final["profile"]), *args],
                          env=final["env"], cwd=ROOT, capture_output=True, text=True)


def test_predict_gives_the_members_probabilities_for_a_held_out_group(final, monkeypatch, data_root):
    import json

    from allrep.data.dataset import manifest
    from allrep.profile import load_profile
    from allrep.train.final import load_manifest
    from allrep.train.inference import Predictor

    for k, v in final["env"].items():
        monkeypatch.setenv(k, v)
    cfg = load_profile(str(final["profile"]))
    m = load_manifest(cfg, "IDB2")
    assert m["held_out"] == final["ids"] and not set(final["ids"]) & set(m["val_ids"])
    pr = Predictor(cfg, "IDB2")
    items = {it.id: it for it in manifest("IDB2")}
    paths = [data_root / items[i].relpath() for i in m["held_out"]]
    got = np.concatenate([pr.member_probs(pr.load(p))["mobilenetv2"] for p in paths], axis=1)
    want = np.array(m["backbones"]["mobilenetv2"]["held_out_members"])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-4), np.abs(got - want).max()
    out = _run(final, *map(str, paths), "--out", str(final["base"] / "p.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((final["base"] / "p.json").read_text())
    assert [r["image"] for r in rows] == list(map(str, paths))
    for r in rows:
        assert 0 <= r["p_all_fused"] <= 1 and r["predicted"] in ("ALL", "healthy") and isinstance(r["refer"], bool)
        assert r["mutual_information"] <= r["entropy"] + 1e-9


def test_bad_input_is_one_line_each_and_the_rest_is_classified(final, tmp_path, data_root):
    from PIL import Image

    from allrep.data.dataset import manifest

    good = data_root / manifest("IDB2")[0].relpath()
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(np.full((128, 128), 128, np.uint8), "L").save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "tiny.png")
    (tmp_path / "empty").mkdir()
    out = _run(final, str(good), str(tmp_path / "truncated.jpg"), str(tmp_path / "text.png"), str(tmp_path / "grey.png"),
               str(tmp_path / "tiny.png"), str(tmp_path / "empty"), str(tmp_path / "missing.tif"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    skipped = [line for line in out.stderr.splitlines() if line.startswith("allrep predict: skipped")]
    reasons = "\n".join(skipped)
    assert len(skipped) == 6
    for name, why in (("truncated.jpg", "truncated"), ("text.png", "not an image"), ("grey.png", "grayscale"),
                      ("tiny.png", "too small"), ("empty", "no JPEG, PNG or TIFF"), ("missing.tif", "no such file")):
        assert any(name in s and why in s for s in skipped), (name, reasons)
    assert good.name in out.stdout  # the good image is still classified


def test_missing_models_name_the_command_that_builds_them(final, data_root):
    """A readable image and no final models for its dataset: the error says how to build them. (A path that is no
    image is reported as such before any model is looked for: tests/test_cli.py.)"""
    image = sorted((data_root / "ALL_IDB2" / "img").glob("*.tif"))[0]
    out = _run(final, str(image), "--dataset", "IDB1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "allrep train-final --profile predicttest --dataset IDB1" in out.stderr
    text = _run(final, str(ROOT / "README.md"), "--dataset", "IDB1")  # not an image: named, no model looked for
    assert text.returncode == 1 and "README.md: not an image PIL can read" in text.stderr
    assert "train-final" not in text.stderr
