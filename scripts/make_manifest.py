"""Regenerate allrep/resources/manifest.csv from a trusted ALL-IDB copy.

    python scripts/make_manifest.py ../shared/data/ALL-IDB

Names, labels, sizes and sha256 only: never pixels (the data is licensed).
"""
import sys
from pathlib import Path

from allrep.data import scan_manifest, write_manifest

rows = scan_manifest(Path(sys.argv[1]))
write_manifest(rows)
print(f"wrote {len(rows)} rows")
