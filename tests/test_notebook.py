"""The data scientist's notebook, executed top to bottom against the embedded stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "fraud_detection.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    doc = json.loads(NOTEBOOK.read_text())
    for cell in doc["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(
    ksql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NOTEBOOK_ROWS", "20000")
    monkeypatch.setenv("NOTEBOOK_EPOCHS", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) for o in outputs)
    assert "roc_auc=" in text, "the training cell printed no model summary"
    assert (tmp_path / "models" / "LATEST").exists()
    assert os.environ["MODELS_DIR"] == str(tmp_path / "models")
