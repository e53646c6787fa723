"""allrep.notebook: what a glue cell shows is every glued value, never a truncated table."""
from allrep.notebook import Glued


def test_a_long_glue_cell_shows_every_key_and_value():
    values = {f"claim_k_{i}": 1000 + i for i in range(150)}  # pandas would print 60 rows and "..."
    text = repr(Glued(values))
    assert "..." not in text and len(text.splitlines()) == 150
    assert all(f"claim_k_{i}" in text and str(1000 + i) in text for i in range(150))
    html = Glued(values)._repr_html_()
    assert html.count("<tr>") == 150 and "1149" in html and "..." not in html  # one body row per value


def test_the_notebooks_ask_for_the_kernel_that_setup_registers():
    """`make setup` registers the kernel "allrep (.venv)"; every source notebook asks for it, so Jupyter opens
    them on the project's environment without a kernel prompt."""
    import json
    import re

    from conftest import ROOT

    make = (ROOT / "Makefile").read_text()
    name, display = re.search(r'ipykernel install --sys-prefix --name (\S+) --display-name "([^"]+)"', make).groups()
    assert re.search(r"^\$\(STAMP\):.*\n(\t.*\n)*\t.*ipykernel install", make, re.M), "setup registers the kernel"
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        spec = json.loads(p.read_text())["metadata"]["kernelspec"]
        assert (spec["name"], spec["display_name"]) == (name, display), p.name
