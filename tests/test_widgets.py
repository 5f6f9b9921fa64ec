"""simclr_lib.teaching.widgets without a kernel: the default figure is shown, controls redraw, a form's button runs."""
import importlib
import sys

import IPython
import IPython.display
import matplotlib.pyplot as plt
import pytest

ipywidgets = pytest.importorskip("ipywidgets")
from simclr_lib.teaching import widgets  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """What widgets.show and the panels displayed, in order (IPython's display, recorded instead)."""
    seen = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **_: seen.extend(objs))
    return seen


def _drawer(calls):
    def draw(**values):
        calls.append(values)
        fig, ax = plt.subplots()
        ax.set_title(repr(values))
        return fig
    return draw


def test_sliders_show_the_default_figure_then_redraw_on_change(shown):
    calls = []
    panel = widgets.sliders(_drawer(calls), s=(0.0, 2.0, 0.1, 0.5), n=(1, 8, 1, 4), mode=["crop", "colour"],
                            k=ipywidgets.IntSlider(value=3, min=1, max=5))
    assert calls == [{"s": 0.5, "n": 4, "mode": "crop", "k": 3}]  # the default figure first
    assert len(shown) == 1 and isinstance(shown[0], plt.Figure) and not plt.get_fignums(), "shown once, closed"
    s, n, mode, k, out = panel.children  # no kernel: returned, not displayed
    assert (type(s), type(n), type(mode), type(out)) == (ipywidgets.FloatSlider, ipywidgets.IntSlider,
                                                         ipywidgets.Dropdown, ipywidgets.Output)
    assert k.description == "k" and s.description == "s" and not s.continuous_update
    s.value = 1.5
    mode.value = "colour"
    assert calls[1:] == [{"s": 1.5, "n": 4, "mode": "crop", "k": 3}, {"s": 1.5, "n": 4, "mode": "colour", "k": 3}]
    assert len(shown) == 3 and not plt.get_fignums()


def test_form_runs_on_run_with_the_field_values(shown):
    runs = []
    panel = widgets.form({"tau": [("0.1", 0.1), ("0.5", 0.5)], "epochs": (1, 20, 1, 5),
                          "name": ipywidgets.Text(value="base"), "seeds": 2, "cosine": True},
                         lambda **values: runs.append(values), button="Train")
    *fields, button, out = panel.children
    assert button.description == "Train" and isinstance(out, ipywidgets.Output) and not shown and not runs
    assert [type(f) for f in fields] == [ipywidgets.Dropdown, ipywidgets.IntSlider, ipywidgets.Text,
                                         ipywidgets.IntText, ipywidgets.Checkbox]
    button.click()
    fields[0].value = 0.5
    button.click()
    assert runs == [{"tau": 0.1, "epochs": 5, "name": "base", "seeds": 2, "cosine": True},
                    {"tau": 0.5, "epochs": 5, "name": "base", "seeds": 2, "cosine": True}]
    assert not button.disabled


def test_a_kernel_sees_the_panel(shown, monkeypatch):
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()})())
    panel = widgets.sliders(_drawer([]), tau=(0.05, 1.0, 0.05, 0.1))
    assert shown[0].__class__ is plt.Figure and shown[1] is panel


def test_a_bad_spec_says_what_a_spec_is():
    with pytest.raises(TypeError, match="min, max, step, default"):
        widgets.control("x", (0, 1))


@pytest.fixture
def no_ipywidgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    yield importlib.reload(widgets)
    monkeypatch.undo()
    importlib.reload(widgets)


def test_without_ipywidgets_the_default_figure_and_one_line(no_ipywidgets, shown, capsys):
    calls = []
    assert no_ipywidgets.ipywidgets is None
    assert no_ipywidgets.sliders(_drawer(calls), s=(0.0, 2.0, 0.1, 0.5), mode=[("crop", 1), ("colour", 2)]) is None
    assert calls == [{"s": 0.5, "mode": 1}] and len(shown) == 1 and not plt.get_fignums()
    assert no_ipywidgets.form({"tau": [0.1]}, lambda **_: None) is None
    assert capsys.readouterr().out == no_ipywidgets.HINT + "\n" + no_ipywidgets.HINT + "\n"
