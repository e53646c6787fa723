"""The pre-registration (allrep.record.preregistration): frozen before any model scored the confirmatory splits,
and still exactly what the confirmatory profile makes."""
import subprocess

import pandas as pd
import pytest
from conftest import ROOT

from allrep.errors import AllrepError
from allrep.profile import load_profile
from allrep.record import preregistration as pre


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def test_the_frozen_splits_and_profile_are_what_the_confirmatory_profile_makes():
    assert pre.check(tables=False) == []  # checksums, every split file byte for byte, the resolved profile


@pytest.mark.slow
def test_the_frozen_operating_characteristics_are_recomputed():
    assert pre.check(tables=True) == []


def test_the_registered_design_meets_both_powers_at_the_margin():
    design = pd.read_csv(pre.FOLDER / "design.csv")
    cfg = load_profile("confirmatory")
    assert set(design["dataset"]) == set(cfg.datasets)
    assert (design["outer_splits"] == cfg.splits.folds * cfg.splits.repeats).all() and (design["outer_splits"] >= 10).all()
    assert (design["p_reproduced_at_paper"] >= 0.8).all() and (design["p_not_reproduced_at_delta_below"] >= 0.8).all()
    assert (design["delta"] == cfg.verdict.delta).all()
    for ds in cfg.datasets:  # k-fold: every image of the dataset tested exactly `repeats` times
        sp = pd.read_csv(pre.FOLDER / "splits" / f"{ds}_grouped.csv")
        per_image = sp[sp["role"] == "test"].groupby("id").size()
        assert len(per_image) == sp["id"].nunique() and (per_image == cfg.splits.repeats).all()
        for _, s in sp.groupby("repeat"):  # no photograph group on both sides of any outer split
            assert not set(s.loc[s["role"] == "test", "group"]) & set(s.loc[s["role"] != "test", "group"])


def test_the_seed_was_new_and_registered_before_any_scoring():
    seed = str(load_profile("confirmatory").seed)
    assert seed != str(load_profile("paper").seed)  # not the development seed
    first = _git("log", "--reverse", "--format=%H %s", "-S", f"seed: {seed}", "--", "profiles").splitlines()
    assert first, "the confirmatory profile is not committed"
    commit, subject = first[0].split(" ", 1)
    assert subject.startswith("Pre-registration"), f"the seed first appears in {commit[:12]}: {subject!r}"
    files = set(_git("show", "--name-only", "--format=", commit).split())
    assert {"profiles/confirmatory.yaml", "book/preregistration.md", "preregistration/SHA256SUMS",
            "preregistration/design.csv", "preregistration/operating_characteristics.csv"} <= files
    # every scoring of a confirmatory test part was made by code that descends from the pre-registration
    ledger = pd.read_csv(ROOT / "results" / "ledger.csv", dtype={"commit": str, "split_seed": str})
    for c in set(ledger.loc[ledger["split_seed"] == seed, "commit"]):
        head = c.split("+")[0]
        assert head != commit[:12] and subprocess.run(["git", "merge-base", "--is-ancestor", commit, head],
                                                      cwd=ROOT).returncode == 0, f"{c} scored before the pre-registration"


def test_a_pre_registration_is_never_overwritten(tmp_path):
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(AllrepError, match="frozen"):
        pre.write(folder=tmp_path)
    with pytest.raises(AllrepError, match="no pre-registration"):
        pre.check(folder=tmp_path / "nowhere")


def test_a_changed_frozen_file_is_caught(tmp_path):
    import shutil

    shutil.copytree(pre.FOLDER, tmp_path / "p")
    f = tmp_path / "p" / "splits" / "IDB2_grouped.csv"
    f.write_text(f.read_text().replace(",test", ",train", 1))
    bad = pre.check(folder=tmp_path / "p", tables=False)
    assert any("IDB2_grouped.csv: changed since it was registered" in b for b in bad)
    assert any("IDB2_grouped.csv: the confirmatory profile no longer produces" in b for b in bad)


def test_a_changed_registered_setting_is_caught_and_added_settings_are_amendments(tmp_path):
    import json
    import shutil

    shutil.copytree(pre.FOLDER, tmp_path / "p")
    rec = json.loads((tmp_path / "p" / "profile.json").read_text())
    rec["settings"]["verdict"]["delta"] = 0.08  # as if the margin had been registered wider
    del rec["settings"]["uncertainty"]["referral_coverage"]  # as if this setting came after the registration
    (tmp_path / "p" / "profile.json").write_text(json.dumps(rec))
    bad = pre.check(folder=tmp_path / "p", tables=False)
    assert any("verdict.delta was registered as 0.08" in b for b in bad)
    assert "uncertainty.referral_coverage" in pre.additions(folder=tmp_path / "p")
    # today: every added setting is named on the pre-registration page as an amendment
    page = (ROOT / "book" / "preregistration.md").read_text()
    assert all(f"`{k}`" in page for k in pre.additions())
