"""The command line as a user meets it: help, the steps listing, predict's path check, train-final's estimate."""
import os
import subprocess
import sys

from conftest import ROOT

from allrep import cli
from allrep.profile import load_profile


def _run(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "allrep.cli", *argv], capture_output=True, text=True, cwd=ROOT, **kw)


def test_help_is_plain_text():
    out = _run("--help")
    assert out.returncode == 0 and "``" not in out.stdout and ":mod:" not in out.stdout
    assert "seal" in out.stdout and "replay" in out.stdout and "weights" in out.stdout


def test_steps_has_a_header_and_a_summary(capsys):
    assert cli.main(["steps", "--profile", "confirmatory"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "variant", "executed", "copy", "state"]
    assert len(lines) == 1 + 33 + 1 and all(line.endswith("sealed") for line in lines[1:-1])
    assert lines[-1].startswith("profile confirmatory: 33 variants, sealed at ") and lines[-1].count("(verified)") == 1


def test_predict_names_a_mistyped_path_before_looking_for_final_models(tmp_path):
    """No final models exist for this profile in an empty cache: the missing path is still what the user hears."""
    out = _run("predict", str(tmp_path / "nosuch.png"), "--profile", "smoke",
               env={**os.environ, "ALLREP_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [f"allrep predict: skipped {tmp_path / 'nosuch.png'}: no such file or folder",
                                       "research software, not a diagnostic device"]


def test_train_final_estimates_its_time_from_the_recorded_runs():
    text = cli.train_final_estimate(load_profile("confirmatory"))
    assert text.startswith("train-final: expect up to about 12 min for one dataset") and "in 25 min on 2 CPUs" in text


def test_allreps_processes_leave_out_the_iri_grammar_and_still_validate_notebooks():
    """An allrep command (here `allrep steps`) imports papermill and nbformat without compiling rfc3987-syntax's IRI
    grammar (about 1.6 s in each process), and nbformat still validates a notebook (and rejects a broken one)."""
    import subprocess
    import sys

    code = """
import sys
from allrep import cli
assert cli.main(["steps", "--profile", "smoke"]) == 0
import nbformat, papermill
assert sys.modules["rfc3987_syntax"] is None
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
nbformat.validate(nb)
nb.cells[0]["cell_type"] = "nonsense"
try:
    nbformat.validate(nb)
except nbformat.ValidationError:
    print("rejected")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1:] == ["rejected"]
