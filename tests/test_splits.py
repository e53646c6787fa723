import pandas as pd
import pytest

from allrep.data.splits import leakage, make_splits
from allrep.errors import AllrepError

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


# ----------------------------------------------------------------------------- properties (hypothesis)
import math  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)
FRACTIONS = st.sampled_from([0.1, 0.15, 0.2, 0.25, 0.3])
DATASETS = st.sampled_from(["IDB1", "IDB2", "combined"])


def _check_partition(sp, dataset):
    from allrep.data.dataset import manifest

    ids = sorted(it.id for it in manifest(dataset))
    for _, part in sp.groupby("repeat"):
        assert sorted(part["id"]) == ids  # every image exactly once per repeat
        assert set(part["role"]) == {"train", "val", "test"}


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, test_fraction=FRACTIONS, val_fraction=FRACTIONS, dataset=DATASETS)
def test_grouped_splits_partition_and_never_share_a_group(seed, test_fraction, val_fraction, dataset):
    sp = make_splits(dataset, "grouped", seed, test_fraction, val_fraction, repeats=2)
    _check_partition(sp, dataset)
    for _, part in sp.groupby("repeat"):
        roles_per_group = part.groupby("group")["role"].nunique()
        assert (roles_per_group == 1).all(), "a group on two sides (train/val/test)"
        biggest = part.groupby("group").size().max()
        for label, cls in part.groupby("label"):
            target = math.ceil(test_fraction * len(cls))
            assert target <= int((cls["role"] == "test").sum()) < target + biggest  # whole groups: overshoot < one


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, test_fraction=FRACTIONS, dataset=DATASETS)
def test_grouped_test_part_never_falls_short_of_its_target(seed, test_fraction, dataset):
    """Found by hypothesis: the picker could end short of its target after skipping big groups (the
    combined grouped splits of the paper profile were one image short in 6 of 10 repeats)."""
    sp = make_splits(dataset, "grouped", seed, test_fraction, 0.2, repeats=3)
    for _, part in sp.groupby("repeat"):
        for label, cls in part.groupby("label"):
            assert int((cls["role"] == "test").sum()) >= math.ceil(test_fraction * len(cls))


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, test_fraction=FRACTIONS, dataset=DATASETS)
def test_paper_split_is_stratified_within_one_image_per_class(seed, test_fraction, dataset):
    sp = make_splits(dataset, "paper", seed, test_fraction, 0.2)
    _check_partition(sp, dataset)
    test = sp[sp["role"] == "test"]
    assert len(test) == math.ceil(test_fraction * len(sp))  # sklearn's test size
    for label, cls in sp.groupby("label"):
        assert abs(int((cls["role"] == "test").sum()) - test_fraction * len(cls)) <= 1
    dup = sp.groupby(sp["id"].map(_sha()))["role"].agg(lambda r: (r == "test").nunique())
    assert (dup == 1).all(), "byte-identical files on both sides"


def _sha():
    from allrep.data.dataset import manifest

    return {it.id: it.sha256 for it in manifest("combined")}


def test_groups_table_equals_what_the_committed_tables_produce():
    """results of scripts/make_provenance.py: groups.csv is the connected components of the
    committed provenance and overlap tables."""
    from allrep.data import provenance as p

    rows = p.build_groups(p.provenance(), p.overlaps())
    committed = p.read_csv(p.GROUPS)
    assert [dict(r, label=str(r["label"])) for r in rows] == committed
    assert len({r["group"] for r in rows}) == 95
