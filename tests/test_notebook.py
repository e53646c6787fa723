"""allrep.notebook: what a glue cell shows is every glued value, never a truncated table."""
from allrep.notebook import Glued


def test_a_long_glue_cell_shows_every_key_and_value():
    values = {f"claim_k_{i}": 1000 + i for i in range(150)}  # pandas would print 60 rows and "..."
    text = repr(Glued(values))
    assert "..." not in text and len(text.splitlines()) == 150
    assert all(f"claim_k_{i}" in text and str(1000 + i) in text for i in range(150))
    html = Glued(values)._repr_html_()
    assert html.count("<tr>") == 150 and "1149" in html and "..." not in html  # one body row per value
