"""Regenerate allrep/resources/manifest.csv from a trusted ALL-IDB copy.

    python scripts/make_manifest.py ../shared/data/ALL-IDB

Names, labels, sizes and sha256 only: never pixels (the data is licensed).
"""
import sys
from pathlib import Path

import pandas as pd

from allrep.data.dataset import MANIFEST, MANIFEST_FIELDS, scan_manifest
from allrep.io import atomic_write_csv

rows = scan_manifest(Path(sys.argv[1]))
atomic_write_csv(pd.DataFrame(rows, columns=MANIFEST_FIELDS), MANIFEST)
print(f"wrote {len(rows)} rows")
