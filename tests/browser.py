"""Measure built book pages in headless Chromium at 1280 px: every table against its column.

Used by the browser test (the smoke book) and by hand on any built book::

    python tests/browser.py book/_build/html    # one line per page with a table wider than its column
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# One harness page loads every page in turn, in a same-origin frame 1280 px wide (file:// pages need
# --allow-file-access-from-files), opens every dropdown, lets the book's scripts react, and measures each
# table against the article's content box and against its own scroll container.
_HARNESS = """<!doctype html><html><body><iframe id="f" style="width:1280px;height:1400px"></iframe>
<script>
var pages = %s, out = [], i = 0, f = document.getElementById("f");
function next() {
  if (i >= pages.length) { document.body.setAttribute("data-result", JSON.stringify(out)); return; }
  f.src = pages[i];
}
function measure() {
  var d = f.contentDocument, main = d.querySelector("article") || d.querySelector("main") || d.body;
  var b = main.getBoundingClientRect(), cs = d.defaultView.getComputedStyle(main);
  var left = b.left + parseFloat(cs.paddingLeft), right = b.right - parseFloat(cs.paddingRight), wide = [];
  main.querySelectorAll("table").forEach(function (t, k) {
    var r = t.getBoundingClientRect(), p = t.parentElement;
    var over = Math.max(r.right - right, left - r.left, p.scrollWidth - p.clientWidth);
    if (r.width > 0 && over > 1) wide.push({table: k, width: Math.round(r.width), over: Math.round(over)});
  });
  out.push({page: pages[i], column: Math.round(right - left), tables: main.querySelectorAll("table").length,
            wide: wide, title: d.title, images: Array.prototype.map.call(main.querySelectorAll("img"),
              function (m) { return m.complete ? m.naturalWidth : 0; })});
  i += 1; next();
}
f.onload = function () {
  f.contentDocument.querySelectorAll("details").forEach(function (x) { x.open = true; });
  setTimeout(measure, 50);
};
next();
</script></body></html>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def pages_of(html_dir: Path) -> list[str]:
    """The built book's content pages (relative paths), without Sphinx's index and search pages."""
    return sorted(str(p.relative_to(html_dir)) for p in html_dir.rglob("*.html")
                  if not p.name.startswith("_") and p.name not in {"genindex.html", "search.html", "index.html"})


def measure(html_dir: Path, pages: list[str] | None = None, exe: str | None = None,
            profile_dir: Path | None = None) -> list[dict]:
    """One record per page: its column's width, its tables, those wider than their column (``wide``: table index,
    width, pixels over), its title and the natural width of each image (0: not loaded)."""
    exe = exe or chromium()
    if exe is None:
        raise RuntimeError("no chromium")
    html_dir = Path(html_dir).resolve()
    pages = pages_of(html_dir) if pages is None else pages
    harness = html_dir / "_measure.html"
    harness.write_text(_HARNESS % json.dumps(pages))
    with tempfile.TemporaryDirectory() as tmp:
        flags = [*FLAGS, f"--user-data-dir={profile_dir or tmp}", "--allow-file-access-from-files",
                 f"--virtual-time-budget={20000 + 5000 * len(pages)}", "--window-size=1400,1500"]
        try:
            dom = subprocess.run([exe, *flags, "--dump-dom", harness.as_uri()], capture_output=True, text=True,
                                 timeout=120 + 5 * len(pages)).stdout
        finally:
            harness.unlink()
    m = re.search(r'data-result="([^"]*)"', dom)
    if not m:
        raise RuntimeError("the harness reported nothing: " + dom[-2000:])
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def main(argv: list[str]) -> int:
    html_dir = Path(argv[0] if argv else "book/_build/html")
    res = measure(html_dir)
    wide = [r for r in res if r["wide"]]
    for r in wide:
        print(f"{r['page']}: column {r['column']} px; " + ", ".join(
            f"table {w['table']} is {w['width']} px ({w['over']} over)" for w in r["wide"]))
    print(f"{len(res)} pages measured at 1280 px, {len(wide)} with a table wider than its column")
    return 1 if wide else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
