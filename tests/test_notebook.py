"""The design-review notebook runs top to bottom (its code cells, in order, in one
namespace) and builds the bundled review through the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NB = Path(__file__).resolve().parent.parent / "notebooks" / "design_review.ipynb"


def _execute(path: Path, monkeypatch) -> dict:
    """Run a notebook's code cells in order, in one namespace, from its folder."""
    matplotlib.use("Agg")
    nb = json.loads(path.read_text())
    monkeypatch.chdir(path.parent)
    ns: dict = {"__name__": "__main__"}
    for i, c in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        exec(compile("".join(c["source"]), f"{path.name}[cell {i}]", "exec"), ns)
    return ns


@pytest.mark.slow  # the whole bundled review: about a minute on 2 cores
def test_design_review_notebook_builds_the_bundled_review(monkeypatch):
    ns = _execute(NB, monkeypatch)
    res = ns["result"]
    assert len(res.runs) == 6 and len(res.bottlenecks) == 6
    # every proposal, GB200's 1,008 GPUs included, has training and serving figures
    per_class = [c for c in res.table.columns if c.endswith(": usd_per_M_tokens")]
    assert len(per_class) == 3 and res.table[per_class].notna().all().all()
    assert res.verdict[0]["column"] == "usd_per_M_fleet_tokens"
    assert ns["paths"]["html"].read_text().index("id='verdict'") < \
        ns["paths"]["html"].read_text().index("id='side-by-side'")
    assert ns["out"].jobs["network"].iloc[0] == "flow"


STUDIES_NB = NB.parent / "studies.ipynb"


@pytest.mark.slow  # the four bundled studies on their quick grids: a minute or two
def test_studies_notebook_runs_the_four_quick_grids_and_draws_them(monkeypatch):
    ns = _execute(STUDIES_NB, monkeypatch)
    assert ns["QUICK"] is True
    assert set(ns["rows"]) == {"oversubscription", "ib-vs-roce", "rail-only",
                               "inference-slo"}
    for name, df in ns["rows"].items():
        assert (df["status"] == "ok").all(), name
        assert not ns["tables"][name].empty, name
        png = ns["figures"].HERE / "figures" / f"study-{name}-quick.png"
        assert png.stat().st_size > 10_000, png  # a drawn figure, not an empty canvas
