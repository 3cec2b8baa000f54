"""notebooks/lab.ipynb runs from top to bottom (tiny parameters) and shows its figures.

The kernel is this interpreter (``sys.executable -m ipykernel_launcher``, through a kernel spec
written for the test), importing this checkout's ``src/``, so the notebook tests the code beside
it, whatever kernels the machine has installed. Skipped without nbclient and ipykernel (the dev
lock has them).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

NEEDS = "running the notebook needs nbformat, nbclient and ipykernel (the dev extra has them)"
nbformat = pytest.importorskip("nbformat", reason=NEEDS)
nbclient = pytest.importorskip("nbclient", reason=NEEDS)
pytest.importorskip("ipykernel", reason=NEEDS)
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (after the skips)
from jupyter_client.manager import KernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "lab.ipynb"
# A few hundred images, one epoch, two seeds, 60 loop iterations: about a minute on 2 cores.
SMALL = {"LIMIT": 600, "TEST_LIMIT": 500, "EPOCHS": 1, "SEEDS": 2, "LOOP_STEPS": 60,
         "LOOP_LIMIT": 720}


def _parameter_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def _kernel(tmp_path: Path) -> KernelManager:
    spec_dir = tmp_path / "kernels" / "mnistlab-test"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "mnistlab test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="mnistlab-test", kernel_spec_manager=specs)


def test_parameter_cell_holds_every_parameter_the_test_sets() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = _parameter_cell(nb).source
    names = {line.split("=")[0].strip() for line in source.splitlines() if "=" in line}
    assert names == set(SMALL)


def test_notebook_has_no_committed_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.timeout(900)
def test_lab_notebook_runs_and_draws_its_figures(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    _parameter_cell(nb).source = "\n".join(f"{k} = {v!r}" for k, v in SMALL.items())
    # The kernel inherits this environment: this checkout's code, runs in a throw-away folder,
    # a headless matplotlib, and the MNIST cache the rest of the suite uses.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(nb, km=_kernel(tmp_path), timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()        # raises CellExecutionError, with the cell's traceback, on an error

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Epoch 1/1  10/10" in text and "val_accuracy:" in text    # the Keras-style lines
    assert 'Model: "cnn"' in text and "Total params: 438,026" in text
    assert "313/313" not in text and "16/16" in text                  # evaluate(): all 500
    assert "CNN - FC:" in text                                        # the paired comparison
    assert re.search(r"read '\d\.\d'", text)      # a written number, its dot in place
    images = [c for c in nb.cells if c.cell_type == "code"
              and any("image/png" in o.get("data", {}) for o in c.outputs)]
    sources = "\n".join(c.source for c in images)
    # digits, learning curves, prediction grid, loss curve, seed comparison
    assert len(images) == 5
    assert "prediction_grid" in sources and "CURVE_PNG" in sources
    assert len(list((tmp_path / "runs").iterdir())) == 2 * 2 + 1     # 2 seeds x 2 models, loop
