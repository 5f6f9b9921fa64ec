"""A notebook's stop button is a normal event: notebook 03's training cell, interrupted while it trains, runs again
at once in the same kernel, and nothing half-written is left in its run folder (DEVELOPERS.md, "An interrupt ...
is a normal event")."""
import os
import signal
import threading
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
INTERRUPT_AFTER_S = 4.0  # into the cell, whose loop then trains for 12 s (SERIES_MINUTES["smoke"], epochs uncapped)


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


@pytest.mark.slow
def test_notebook03_training_cell_interrupted_then_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCLR_SMOKE", "1")
    monkeypatch.setenv("SIMCLR_RUNS_DIR", str(tmp_path / "runs"))  # the kernel inherits the environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / "03_training_loop_lars.ipynb", as_version=4)
    train = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "learner.train_simclr(" in c.source
                 and "history =" in c.source)
    run_dir = tmp_path / "runs" / "notebooks" / "smoke"
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells[:train]):
            if cell.cell_type == "code":
                client.execute_cell(cell, i)
        longer = nbformat.v4.new_code_cell("cfg = cfg.replace(epochs=10_000)  # smoke's 1 epoch: the time ends it")
        nb.cells.append(longer)
        client.execute_cell(longer, len(nb.cells) - 1)
        pid = client.km.provisioner.pid  # the stop button of a local kernel: SIGINT (its interrupt mode)
        stop = threading.Timer(INTERRUPT_AFTER_S, os.kill, (pid, signal.SIGINT))
        stop.start()
        with pytest.raises(nbclient.exceptions.CellExecutionError, match="KeyboardInterrupt"):
            client.execute_cell(nb.cells[train], train)
        stop.join()
        assert not (run_dir / "metrics.json").exists(), "an interrupted run must not leave a run folder behind"
        client.execute_cell(nb.cells[train], train)  # run the cell again, right away, in the same kernel
    out = _text(nb.cells[train])
    assert "kNN top-1:" in out and "at random init ->" in out, out
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
