"""The README's tables of notebook results say what the stored notebook outputs say (issue 20, item 8)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stored_numbers(name: str) -> set[str]:
    """Every percentage in a notebook's stored outputs, rounded to one decimal ("75.46%" -> "75.5")."""
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    text = ""
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            text += "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", ""))
            text += "".join(o.get("data", {}).get("text/plain", ""))
    return {f"{float(m):.1f}" for m in re.findall(r"(\d+(?:\.\d+)?) ?%", text)}


def _readme_block(start: str, table: bool = True) -> str:
    """The README from ``start`` to the end of the table that follows it (``table``) or of its paragraph."""
    readme = (ROOT / "README.md").read_text()
    i = readme.index(start)
    return readme[i:readme.index("\n\n", readme.index("|", i) if table else i)]


def test_the_notebook_04_table_matches_its_stored_outputs():
    block = _readme_block("The series' notebook 04 on the shipped encoder")
    table = "\n".join(line for line in block.splitlines() if line.startswith("|"))
    stored = _stored_numbers("04_linear_evaluation")
    claimed = re.findall(r"(\d+\.\d) %", table)
    assert len(claimed) >= 8
    missing = [x for x in claimed if x not in stored]
    assert not missing, f"README's notebook-04 table has numbers that 04's stored outputs do not show: {missing}"


def test_the_notebook_03_sentence_matches_its_stored_outputs():
    block = _readme_block("Notebook 03's own run", table=False)
    claimed = re.findall(r"(\d+\.\d) %", block)
    assert len(claimed) == 2
    stored = _stored_numbers("03_training_loop_lars")
    assert set(claimed) <= stored, (claimed, sorted(stored))
