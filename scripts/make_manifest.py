"""Regenerate allrep/resources/manifest.csv from a trusted ALL-IDB copy.

    python scripts/make_manifest.py /path/to/ALL-IDB

Names, labels, sizes and sha256 only: never pixels (the data is licensed).
"""
import sys
from pathlib import Path

import pandas as pd

from allrep.data.dataset import MANIFEST, MANIFEST_FIELDS, SUBDIRS, XYC_DIR, label_from_name, sha256_file
from allrep.io import atomic_write_csv


def scan_manifest(root: Path) -> list[dict]:
    """Manifest rows of a trusted copy."""
    from PIL import Image

    rows = []
    for db, (top, sub, ext) in SUBDIRS.items():
        for p in sorted((root / top / sub).glob(f"*{ext}")):
            with Image.open(p) as im:
                w, h = im.size
            rows.append(dict(db=db, file=p.name, kind="image", label=label_from_name(p.name),
                             width=w, height=h, sha256=sha256_file(p)))
    top, sub, ext = XYC_DIR
    for p in sorted((root / top / sub).glob(f"*{ext}")):
        rows.append(dict(db="IDB1", file=p.name, kind="xyc", label=label_from_name(p.name),
                         width="", height="", sha256=sha256_file(p)))
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "ALL_IDB2").is_dir():
        sys.exit(__doc__.strip().splitlines()[2].strip() + "\n(the argument must be an ALL-IDB folder; nothing written)")
    rows = scan_manifest(Path(sys.argv[1]))
    if not rows:
        sys.exit("no image found: nothing written")
    atomic_write_csv(pd.DataFrame(rows, columns=MANIFEST_FIELDS), MANIFEST)
    print(f"wrote {len(rows)} rows")
