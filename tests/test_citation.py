"""CITATION.cff: a valid citation file for the project that names the replicated paper and the dataset."""
import tomllib

import yaml
from conftest import ROOT


def test_citation_file_cites_the_project_the_paper_and_the_dataset():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cff["version"] == version  # one version, said twice
    refs = {r["type"]: r for r in cff["references"]}
    paper = refs["article"]
    assert [a["family-names"] for a in paper["authors"]] == ["Akter", "Khatun", "Islam"] and paper["year"] == 2024
    assert {"type": "other", "value": "arXiv:2410.14536"} in paper["identifiers"]
    assert "ALL-IDB" in refs["conference-paper"]["title"] and refs["conference-paper"]["year"] == 2011
