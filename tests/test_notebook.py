"""allrep.notebook: what a glue cell shows is every glued value, never a truncated table."""
import pytest

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


_CACHED_STEP = """
import sys
import allrep.notebook
ctx = allrep.notebook.setup("30_ensemble", "smoke", backbone="mobilenetv2", dataset="IDB2")
from allrep.steps import step30_ensemble
from allrep.train import tuning
from allrep.train.heads import convergence, epochs_summary
tuning.space_table()
started = "keras" in sys.modules or "tensorflow" in sys.modules
import numpy as np
before = np.random.rand()
import keras
after = np.random.rand()
from keras.src.utils.rng_utils import get_random_seed  # keras' record of set_random_seed (no public getter)
print(started, ctx.env["backend"], before, after, get_random_seed())
"""


@pytest.mark.slow  # starts the backend
def test_a_notebook_that_reads_caches_starts_no_backend_and_keras_is_seeded_on_import():
    """A notebook's set-up and the modules of a step that only reads cached heads do not import keras (about 5 s of
    CPU in each of the smoke run's notebooks); keras, once imported, is seeded with the profile's seed as if set-up
    had imported it: numpy's global stream restarts from the seed, and keras records the profile's seed as set by
    ``keras.utils.set_random_seed`` (the seed its own and the backend's draws start from)."""
    import subprocess
    import sys

    import numpy as np
    from conftest import ROOT

    from allrep.profile import load_profile

    out = subprocess.run([sys.executable, "-c", _CACHED_STEP], cwd=ROOT, capture_output=True, text=True, check=True)
    started, backend, before, after, keras_seed = out.stdout.splitlines()[-1].split()  # after the set-up line
    assert started == "False" and backend == "tensorflow"
    seed = load_profile("smoke").seed
    np.random.seed(seed)
    assert float(before) == float(after) == np.random.rand()  # re-seeded when keras arrived
    assert keras_seed == str(seed)
