"""Sliders and forms for the notebooks, built on ipywidgets: a figure to move, a run to launch.

* :func:`sliders` -- notebooks 01 and 02: a figure redrawn as controls move (colour strength and crop scale in 01,
  the temperature in 02).
* :func:`form` -- notebook 06: a few fields and a Run button that calls a function with their values.
* :func:`control` -- one control from a short spec (both accept specs or ready ipywidgets objects).

Static first: :func:`sliders` shows the figure for the default values as an ordinary output, so a stored notebook,
nbval, the course site and a reader without a kernel all see it. The controls are live widgets: they are shown
only where a kernel answers them (JupyterLab, Colab, VS Code), and ``tools/run_notebooks.py`` keeps none of them
in a stored notebook. Without ipywidgets (a core dependency, so only a hand-made environment lacks it) each
function prints one line saying how to get the controls.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

try:
    import ipywidgets
except ImportError:  # pragma: no cover - the fallback is tested by making it unimportable
    ipywidgets = None

HINT = "Controls need ipywidgets: pip install ipywidgets, restart the kernel and run this cell again."
STYLE = {"description_width": "initial"}  # a control's name shown in full, not cut to a fixed width


def _is_widget(spec: Any) -> bool:
    return ipywidgets is not None and isinstance(spec, ipywidgets.ValueWidget)


def default(spec: Any) -> Any:
    """The value a control starts at: a slider spec's last number, a dropdown's first option, a widget's value."""
    if _is_widget(spec):
        return spec.value
    if isinstance(spec, tuple) and len(spec) == 4:
        return spec[3]
    if isinstance(spec, list):
        return spec[0][1] if isinstance(spec[0], tuple) else spec[0]  # (label, value) pairs or plain values
    return spec


def control(name: str, spec: Any) -> "ipywidgets.ValueWidget":
    """One ipywidgets control named ``name``, from a spec or a ready widget (returned as it is).

    Taught in notebook 01 (through :func:`sliders`).

    Args:
        name: the keyword the control's value is passed as; also its label, unless a ready widget has one.
        spec: ``(min, max, step, default)`` a slider (an IntSlider when all four are ints, else a FloatSlider,
            redrawn when released); a list of options (or of ``(label, value)`` pairs) a dropdown starting at
            the first; a bool a checkbox; an int or a float a number box; a str a text box; or an ipywidgets
            ValueWidget.
    """
    if _is_widget(spec):
        spec.description = spec.description or name
        return spec
    w = ipywidgets
    if isinstance(spec, tuple) and len(spec) == 4:
        lo, hi, step, value = spec
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in spec)
        slider = w.IntSlider if ints else w.FloatSlider
        return slider(min=lo, max=hi, step=step, value=value, description=name, style=STYLE,
                      continuous_update=False)
    kinds = [(list, w.Dropdown), (bool, w.Checkbox), (int, w.IntText), (float, w.FloatText), (str, w.Text)]
    for kind, make in kinds:  # bool before int: True is an int too
        if isinstance(spec, kind):
            return make(options=spec, description=name, style=STYLE) if kind is list else \
                make(value=spec, description=name, style=STYLE)
    raise TypeError(f"{name}: {spec!r} is no control spec: (min, max, step, default), a list of options, "
                    "a bool, an int, a float, a str or an ipywidgets ValueWidget")


def show(fig: Figure) -> None:
    """Display ``fig`` once as an ordinary output and close it (an open figure would be drawn again when the
    cell ends)."""
    from IPython.display import display

    display(fig)
    plt.close(fig)


def _live() -> bool:
    """Whether a kernel runs this code (Jupyter, Colab, nbclient): only there can a widget answer its controls."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _panel(children: list) -> "ipywidgets.VBox":
    box = ipywidgets.VBox(children)
    if _live():
        from IPython.display import display

        display(box)
    return box


def sliders(draw: Callable[..., Figure], **controls: Any) -> Optional["ipywidgets.VBox"]:
    """Show ``draw``'s figure for the default values, then controls that redraw it below them as they move.

    Taught in notebooks 01 (colour strength and crop scale) and 02 (the temperature). The default figure is an
    ordinary output, kept in the stored notebook and left in place as a reference; each change draws the figure
    for the new values in an output area under the controls (sliders redraw when released).

    Args:
        draw: ``draw(**values) -> matplotlib Figure``, called with one keyword per control; the figure is
            displayed and closed here.
        **controls: one spec or ipywidgets object per keyword of ``draw`` (see :func:`control`), e.g.
            ``s=(0.0, 2.0, 0.1, 1.0)``: a slider from 0 to 2 in steps of 0.1, starting at 1.

    Returns:
        The controls and their output area (an ipywidgets VBox, displayed where a kernel runs this: assign it,
        ``panel = sliders(...)``, so that it is not shown twice), or None without ipywidgets.
    """
    show(draw(**{name: default(spec) for name, spec in controls.items()}))
    if ipywidgets is None:
        print(HINT)
        return None
    widgets = {name: control(name, spec) for name, spec in controls.items()}
    out = ipywidgets.Output()

    def redraw(_change: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            show(draw(**{name: w.value for name, w in widgets.items()}))

    for w in widgets.values():
        w.observe(redraw, names="value")
    return _panel([*widgets.values(), out])


def form(fields: dict, on_run: Callable[..., Any], button: str = "Run") -> Optional["ipywidgets.VBox"]:
    """A small form: one control per field, a button, and an output area where ``on_run(**values)`` prints.

    Taught in notebook 06 (an experiment to launch from a few choices). A click calls ``on_run`` with each
    field's current value as a keyword; its prints, figures and any error appear in the output area, which is
    cleared first. The button is disabled while ``on_run`` runs.

    Args:
        fields: ``{keyword: spec or ipywidgets object}`` (see :func:`control`), e.g.
            ``{"tau": [0.1, 0.5, 1.0], "epochs": (1, 20, 1, 5)}``.
        on_run: called as ``on_run(**values)``.
        button: the button's label.

    Returns:
        The form (an ipywidgets VBox whose children are the fields' controls, the button and the output area;
        displayed where a kernel runs this: assign it, ``panel = form(...)``, so that it is not shown twice), or
        None without ipywidgets (call ``on_run`` with your values instead).
    """
    if ipywidgets is None:
        print(HINT)
        return None
    widgets = {name: control(name, spec) for name, spec in fields.items()}
    run = ipywidgets.Button(description=button, button_style="primary")
    out = ipywidgets.Output()

    def clicked(_button: Any) -> None:
        run.disabled = True
        try:
            with out:
                out.clear_output(wait=True)
                on_run(**{name: w.value for name, w in widgets.items()})
        finally:
            run.disabled = False

    run.on_click(clicked)
    return _panel([*widgets.values(), run, out])
