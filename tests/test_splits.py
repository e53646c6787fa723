import pandas as pd
import pytest

from allrep.errors import AllrepError
from allrep.splits import leakage, make_splits

SEED = 20241018


@pytest.mark.parametrize("dataset,n_test,n_all", [("IDB1", 22, 108), ("IDB2", 52, 260), ("combined", 74, 368)])
def test_paper_protocol_sizes_and_stratification(dataset, n_test, n_all):
    sp = make_splits(dataset, "paper", SEED)
    assert len(sp) == n_all
    test = sp[sp["role"] == "test"]
    assert len(test) == n_test
    frac_all, frac_test = sp["label"].mean(), test["label"].mean()
    assert abs(frac_all - frac_test) <= 1 / n_test
    # byte-identical files never straddle
    for a, b in (("IDB1/Im093_0", "IDB1/Im108_0"), ("IDB2/Im223_0", "IDB2/Im257_0")):
        roles = sp.set_index("id")["role"]
        if a in roles:
            assert (roles[a] == "test") == (roles[b] == "test")


@pytest.mark.parametrize("dataset", ["IDB1", "IDB2", "combined"])
def test_grouped_protocol_no_group_straddles(dataset):
    sp = make_splits(dataset, "grouped", SEED, repeats=5)
    assert sorted(sp["repeat"].unique()) == [0, 1, 2, 3, 4]
    for r, part in sp.groupby("repeat"):
        sides = part.groupby("group")["role"].apply(lambda s: set(s) & {"test"} and set(s) - {"test"})
        assert not any(bool(v) for v in sides), f"repeat {r}: a group straddles train and test"
        vsides = part[part["role"] != "test"].groupby("group")["role"].nunique()
        assert (vsides == 1).all(), "a group straddles train and validation"
        assert leakage(part)["n_test_group_in_train"] == 0
        test = part[part["role"] == "test"]
        assert 0.15 <= len(test) / len(part) <= 0.25
        assert abs(test["label"].mean() - part["label"].mean()) < 0.1
    tests = [frozenset(p.loc[p["role"] == "test", "id"]) for _, p in sp.groupby("repeat")]
    assert len(set(tests)) == 5  # repeats differ


def test_splits_are_identical_across_runs_and_val_comes_from_train():
    a = make_splits("IDB2", "grouped", SEED, repeats=3)
    b = make_splits("IDB2", "grouped", SEED, repeats=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(make_splits("IDB2", "grouped", SEED + 1, repeats=3))
    p = make_splits("IDB2", "paper", SEED)
    assert set(p["role"]) == {"train", "val", "test"}
    assert len(p[p["role"] == "test"]) == 52  # validation is carved from the 208 training images


def test_paper_protocol_leaks_and_says_so():
    sp = make_splits("IDB2", "paper", SEED)
    assert leakage(sp)["fraction"] > 0.5  # crops of one photograph on both sides


def test_unknown_protocol():
    with pytest.raises(AllrepError, match="unknown protocol"):
        make_splits("IDB2", "kfold", SEED)
