"""The notebook runs top to bottom (its code cells, in order, in one namespace)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

NB = Path(__file__).resolve().parent.parent / "notebooks" / "design_review.ipynb"


def test_design_review_notebook_executes(monkeypatch):
    matplotlib.use("Agg")
    nb = json.loads(NB.read_text())
    monkeypatch.chdir(NB.parent)
    ns: dict = {"__name__": "__main__"}
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for i, c in enumerate(code):
        exec(compile("".join(c["source"]), f"{NB.name}[cell {i}]", "exec"), ns)
    df = ns["df"]
    assert len(df) == 4 and df["capex_total_USD"].gt(0).all()
    assert ns["table"].attrs["busy"] is not None and 0 < ns["table"].attrs["busy"] <= 1
    assert os.path.exists(NB)
