import numpy as np

from allrep.data import provenance as pv
from allrep.data.dataset import load_image, manifest


def test_every_crop_has_one_parent_with_the_same_label():
    prov = pv.provenance()
    assert len(prov) == 260
    assert all(r["parent"] for r in prov)
    labels = {it.id: it.label for it in manifest("combined")}
    assert all(labels[r["crop"]] == labels[r["parent"]] for r in prov)
    assert len({r["parent"] for r in prov}) == 102  # distinct photographs (with Im093_0 = Im108_0 counted once)


def test_recorded_positions_are_exact_windows(data_root):
    prov = {r["crop"]: r for r in pv.provenance()}
    by_id = {it.id: it for it in manifest("combined")}
    for crop in ("IDB2/Im001_1", "IDB2/Im004_1", "IDB2/Im144_0", "IDB2/Im250_0"):
        r = prov[crop]
        c = load_image(by_id[crop], None, data_root)
        s = load_image(by_id[r["parent"]], None, data_root)
        x, y = int(r["x"]), int(r["y"])
        assert np.array_equal(s[y:y + c.shape[0], x:x + c.shape[1]], c)


def test_groups_are_label_pure_and_join_what_must_stay_together():
    g = pv.groups()
    labels = {it.id: it.label for it in manifest("combined")}
    by_group = {}
    for i, gid in g.items():
        by_group.setdefault(gid, set()).add(labels[i])
    assert all(len(v) == 1 for v in by_group.values())
    assert g["IDB1/Im093_0"] == g["IDB1/Im108_0"]  # byte-identical
    assert g["IDB2/Im223_0"] == g["IDB2/Im257_0"]
    assert g["IDB1/Im095_0"] == g["IDB1/Im096_0"]  # 2x close-up
    assert g["IDB1/Im009_1"] == g["IDB1/Im010_1"] == g["IDB1/Im011_1"]  # shifted fields
    prov = {r["crop"]: r["parent"] for r in pv.provenance()}
    assert all(g[c] == g[p] for c, p in prov.items())
    idb1_groups = {g[it.id] for it in manifest("IDB1")}
    assert len(idb1_groups) == 95


def test_signature_search_finds_a_synthetic_window():
    rng = np.random.default_rng(0)
    slide = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    crop = slide[50:150, 120:257].copy()
    assert pv.find_in_slide(crop, slide) == (120, 50)
    other = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    assert pv.find_in_slide(crop, other) is None
