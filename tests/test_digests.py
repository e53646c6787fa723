"""Per-stage digests (allrep.record.digests): each stage's digest moves with its own content only."""
import json

import numpy as np

from allrep.io import atomic_save_npz
from allrep.profile import load_profile
from allrep.record import digests, places


def _run(tmp_path, monkeypatch, feature=0.5, weights="w1", reduction="r1", prob="0.25"):
    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path / "scratch"))
    cfg = load_profile("smoke")
    cache = tmp_path / "cache"
    atomic_save_npz(cache / "features" / "mobilenetv2-abc-96" / "IDB2_Im001_1.npz",
                    features=np.full((1, 4, 8), feature, np.float16))
    (cache / "members" / "mobilenetv2").mkdir(parents=True, exist_ok=True)
    (cache / "members" / "mobilenetv2" / "k1.json").write_text(json.dumps(
        dict(weights_sha256=weights, reduction_sha256=reduction)))
    out = places.output_dir(cfg)
    for rel, text in (("probabilities/IDB2_mobilenetv2.csv", f"id,p_all\na,{prob}\n"),
                      ("tuning/IDB2_mobilenetv2_best.csv", "lr\n0.1\n"), ("claims.csv", "k\n3\n"),
                      ("timings/runs.json", "[]")):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    return digests.stage_digests(cfg, cache)


def test_each_stage_digest_moves_with_its_own_content_only(tmp_path, monkeypatch):
    base = _run(tmp_path / "a", monkeypatch)
    assert set(base["stages"]) == set(digests.STAGES) and base["cpu"]["machine"]
    assert base["stages"]["features"]["mobilenetv2-abc-96"]["items"] == 1
    assert base["stages"]["results"] == {"claims.csv": base["stages"]["results"]["claims.csv"]}  # no timings
    assert digests.compare(base, _run(tmp_path / "b", monkeypatch)) == []  # the same content elsewhere
    assert digests.compare(base, _run(tmp_path / "c", monkeypatch, feature=0.25)) == ["features/mobilenetv2-abc-96"]
    assert digests.compare(base, _run(tmp_path / "d", monkeypatch, weights="w2")) == ["heads/mobilenetv2"]
    assert digests.compare(base, _run(tmp_path / "e", monkeypatch, reduction="r2")) == ["reduction/mobilenetv2"]
    assert digests.compare(base, _run(tmp_path / "f", monkeypatch, prob="0.26")) == ["probabilities/probabilities"]


def test_wall_time_columns_do_not_enter_a_digest(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("seed,epochs_run,train_seconds\n3,2,25.9\n")
    b.write_text("seed,epochs_run,train_seconds\n3,2,32.5\n")
    assert digests._file_sha(a) == digests._file_sha(b)
    b.write_text("seed,epochs_run,train_seconds\n3,3,25.9\n")
    assert digests._file_sha(a) != digests._file_sha(b)


def test_a_record_of_other_arithmetic_is_reported_never_compared(tmp_path, monkeypatch):
    """A record made before a change of the arithmetic (a feature extraction or engine version, the scoring's) on
    this very CPU is named as such and not compared: it describes other code, not another CPU."""
    mine = _run(tmp_path / "a", monkeypatch)
    assert mine["arithmetic"] == digests.arithmetic() and mine["arithmetic"]["results"] == digests.RESULTS
    older = json.loads(json.dumps(mine))
    older.pop("arithmetic")  # a record from before the versions were recorded
    older["stages"]["features"]["mobilenetv2-abc-96"]["sha256"] = "0" * 64
    assert digests.same_machine(older, mine) and not digests.comparable(older, mine)
    assert digests.comparable(mine, json.loads(json.dumps(mine)))
    (line,) = digests.report(mine, [older])
    assert "this CPU" in line and "other arithmetic" in line and "not compared" in line and "differs" not in line
    assert digests.arithmetic_words(older) in line and digests.arithmetic_words(mine) != digests.arithmetic_words(older)
    newer = dict(mine, arithmetic=dict(mine["arithmetic"], features=mine["arithmetic"]["features"] + 1))
    assert not digests.comparable(newer, mine)
    (line,) = digests.report(mine, [json.loads(json.dumps(mine))])
    assert line.endswith("every stage identical")
