"""tools/run_notebooks.py keeps what a reader of a stored notebook sees: no widget views, a tqdm bar's final line."""
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import run_notebooks  # noqa: E402  (a repository tool, not part of the package)

VIEW = run_notebooks.WIDGET_VIEW


def _model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _tqdm_state(box: str, left: str, value: float, total: float, right: str, hidden: bool = False) -> dict:
    """The widget state nbclient stores for one tqdm.auto bar (an HBox of HTML, FloatProgress, HTML)."""
    ids = [f"{box}-{part}" for part in ("left", "bar", "right", "layout")]
    return {box: _model("HBoxModel", children=[f"IPY_MODEL_{i}" for i in ids[:3]], layout=f"IPY_MODEL_{ids[3]}"),
            ids[0]: _model("HTMLModel", value=left), ids[1]: _model("FloatProgressModel", value=value, max=total),
            ids[2]: _model("HTMLModel", value=right),
            ids[3]: _model("LayoutModel", visibility="hidden" if hidden else None, display=None)}


def _view(model_id: str, text: str) -> dict:
    return nbformat.v4.new_output("display_data", data={"text/plain": text, VIEW: {"version_major": 2,
                                                                                   "version_minor": 0,
                                                                                   "model_id": model_id}})


def test_widget_views_become_text_or_go():
    state = {**_tqdm_state("b1", "steps\u2007&lt;1&gt;:\u2007100%", 50, 50, "\u200750/50\u2007[00:01&lt;00:00]"),
             **_tqdm_state("b2", "\u2007\u20070%", 5, 5, "\u20070/5", hidden=True),  # a leave=False bar
             **_tqdm_state("b3", "", 7, 0, "7it\u2007[00:00]"),  # no total
             "s1": _model("VBoxModel", children=[])}  # the controls of widgets.sliders
    nb = nbformat.v4.new_notebook(metadata={"widgets": {run_notebooks.WIDGET_STATE: {"state": state}}})
    fig = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    nb.cells = [nbformat.v4.new_code_cell("", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="before\n"), _view("b1", "steps <1>:   0%|"),
        _view("b2", "  0%|"), _view("b3", "0it"), fig, _view("s1", "VBox(children=(FloatSlider(...),))"),
        _view("gone", "a widget whose state was not stored")])]
    run_notebooks.clean(nb)
    outs = nb.cells[0].outputs
    assert "widgets" not in nb.metadata
    assert not any(VIEW in o.get("data", {}) for o in outs)
    assert [o.get("text") or o["data"]["text/plain"] for o in outs] == [
        "before\n", "steps <1>: 100%|██████████| 50/50 [00:01<00:00]", "7it [00:00]", "<Figure>"]


def test_a_notebook_without_widgets_is_unchanged():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("stream", name="stdout", text="x\n")])]
    before = nbformat.writes(nb)
    run_notebooks.clean(nb)
    assert nbformat.writes(nb) == before


@pytest.mark.slow
def test_a_real_execution_stores_the_final_bar_line(tmp_path, capsys):
    pytest.importorskip("ipywidgets")
    path = tmp_path / "bars.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from tqdm.auto import tqdm\nprint('before')\nfor _ in tqdm(range(50), desc='steps'):\n    pass\n"
        "for _ in tqdm(range(5), desc='hidden', leave=False):\n    pass\nprint('after')")]
    nbformat.write(nb, path)
    assert run_notebooks.main([str(path)]) == 0
    assert "bars.ipynb:" in capsys.readouterr().out
    stored = nbformat.read(path, as_version=4)
    outs = stored.cells[0].outputs
    assert "widgets" not in stored.metadata and not any(VIEW in o.get("data", {}) for o in outs)
    texts = [o.get("text") or o["data"]["text/plain"] for o in outs]
    assert texts[0] == "before\n" and texts[-1] == "after\n" and len(texts) == 3, texts
    assert texts[1].startswith("steps: 100%|██████████| 50/50 [")
