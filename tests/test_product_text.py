"""The product speaks of itself: no page, profile, script or module names the machine it was built on,
an issue number, or someone's time budget. It says instead what the project needs ("2 CPU cores",
"about an hour", "which weights")."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, pattern), matched line by line, case-insensitive
PATTERNS = [
    ("issue number", r"\bissue #?\d+"),
    # "#" and 2 to 5 digits at the start of a line or after a space or "(": not a heading ("# "), a shebang,
    # an HTML entity ("&#39;"), a hex colour ("#1f77b4", "#000000") or a fragment ("page#12")
    ("issue reference", r"(?:^|(?<=[\s(]))#\d{2,5}(?![\w])"),
    ("the issue's", r"\bthe issue's\b"),
    ("lent", r"\blent\b"),
    ("the machine that ran it", r"\bthe machine that (ran|built)\b"),
    ("this machine", r"\bthis machine\b"),
    ("someone's budget", r"\b(time|cpu|gpu|the issue's|60-minute|\d+-minute) budget\b"),
    ("someone's bar", r"(\d+|\{[^}]*\})-minute bar\b"),
    ("the device tool", r"\bdevice tool\b"),
    ("the build environment's tools", r"\bshared/tools\b"),
    ("CEO", r"\bCEO\b"),
]

# (path, text on the line): lines that match a pattern and stay, each with its reason (none today)
ALLOWED: list = []


def product_files(root: Path) -> list[Path]:
    """README.md, the book's own pages (not the generated or sealed folders), profiles, Makefile, scripts
    and the package's modules."""
    files = [root / "README.md", root / "Makefile"]
    files += sorted((root / "book").glob("*.md"))
    files += sorted((root / "profiles").glob("*.yaml"))
    files += sorted(p for p in (root / "scripts").glob("*") if p.is_file())
    files += sorted(p for p in (root / "allrep").rglob("*.py") if "__pycache__" not in p.parts)
    return [p for p in files if p.is_file()]


def offences(root: Path) -> list[str]:
    """'path:line: what (the line)' for every line of the product text that speaks of its builders."""
    compiled = [(name, re.compile(rx, re.I)) for name, rx in PATTERNS]
    found = []
    for path in product_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(lines, 1):
            if any(rel == p and text in line for p, text in ALLOWED):
                continue
            for name, rx in compiled:
                if rx.search(line):
                    found.append(f"{rel}:{i}: {name}: {line.strip()[:120]}")
    return found


def test_the_product_text_speaks_of_the_project_not_of_its_builders():
    found = offences(ROOT)
    assert not found, ("say what the project needs instead (cores, time, which weights), not which machine, "
                       "issue or budget:\n" + "\n".join(found))


def test_a_re_added_phrase_is_reported_by_file_and_line(tmp_path):
    for folder in ("book", "profiles", "scripts"):
        (tmp_path / folder).mkdir()
    (tmp_path / "allrep").mkdir()
    (tmp_path / "book" / "page.md").write_text("# A page\n\nThe cut follows the spec (see issue #12).\n")
    (tmp_path / "profiles" / "p.yaml").write_text("trials: 8  # 8, not 10: the CPU budget\ncolour: '#1f77b4'\n")
    (tmp_path / "scripts" / "run.sh").write_text("#!/usr/bin/env bash\n# on the lent GPU machine (#19)\n")
    (tmp_path / "allrep" / "m.py").write_text('"""Weights: none on the machine that ran it."""\nX = "&#39;"\n')
    found = offences(tmp_path)
    assert any(f.startswith("book/page.md:3: issue number") for f in found), found
    assert any(f.startswith("profiles/p.yaml:1: someone's budget") for f in found), found
    assert any(f.startswith("scripts/run.sh:2: lent") for f in found), found
    assert any(f.startswith("scripts/run.sh:2: issue reference") for f in found), found
    assert any(f.startswith("allrep/m.py:1: the machine that ran it") for f in found), found
    # headings, shebangs, hex colours and HTML entities are not issue references
    assert not [f for f in found if f.split(":")[:2] in (["book/page.md", "1"], ["profiles/p.yaml", "2"],
                                                         ["scripts/run.sh", "1"], ["allrep/m.py", "2"])], found
    assert len(found) == 6, found  # "issue #12" is both an issue number and an issue reference
