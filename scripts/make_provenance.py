"""Recompute the crop-to-slide table, the slide overlaps and the groups from the images.

    python scripts/make_provenance.py /path/to/ALL-IDB

Writes allrep/resources/{crop_provenance,slide_overlaps,groups}.csv (coordinates only).
"""
import sys
from pathlib import Path

import pandas as pd

from allrep.data import provenance as pv
from allrep.io import atomic_write_csv


def write(rows, path):
    atomic_write_csv(pd.DataFrame(rows), path)


if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "ALL_IDB2").is_dir():
    sys.exit("usage: python scripts/make_provenance.py /path/to/ALL-IDB (an ALL-IDB folder; nothing written)")
root = sys.argv[1]
prov = pv.match_crops(root)
write(prov, pv.PROVENANCE)
print(f"crops located: {sum(1 for r in prov if r['parent'])}/{len(prov)}")
ov = pv.find_overlaps(root)
write(ov, pv.OVERLAPS)
print(f"overlapping slide pairs: {len(ov)}")
grp = pv.build_groups(prov, ov)
write(grp, pv.GROUPS)
print(f"groups: {len(set(r['group'] for r in grp))}")
