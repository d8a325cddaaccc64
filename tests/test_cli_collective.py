"""fabsim collective and fabsim validate as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main

TOPO = Path(__file__).resolve().parents[1] / "topologies"
IB = str(TOPO / "dgx-h100-superpod-ib.yaml")


def test_collective_table_json_and_plot(capsys, tmp_path):
    png = tmp_path / "busbw.png"
    assert main(["collective", "--topology", IB, "--op", "all_reduce", "--ranks", "8,64",
                 "--sizes", "1KiB:1GiB:32", "--json", "--plot", str(png)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["ranks"] for r in rows} == {8, 64}
    assert sorted({r["bytes"] for r in rows}) == [1024, 32768, 2**20, 2**25, 2**30]
    for r in rows:
        assert set(r) >= {"op", "ranks", "bytes", "algorithm", "time_s", "algbw_GBps",
                          "busbw_GBps"}
        assert r["busbw_GBps"] == pytest.approx(
            r["algbw_GBps"] * 2 * (r["ranks"] - 1) / r["ranks"])
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_collective_table_text(capsys):
    assert main(["collective", "--topology", IB, "--op", "all_to_all", "--ranks", "16",
                 "--sizes", "1MiB,1GiB"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[:6] == ["ranks", "size", "bytes", "time(us)", "algbw(GB/s)",
                                  "busbw(GB/s)"]
    assert len(out) == 5 and out[3].split()[1] == "1MiB" and "direct" in out[4]


@pytest.mark.parametrize("args, match", [
    (["--ranks", "2048"], "only 1024 accelerators"),
    (["--ranks", "1"], "at least 2"),
    (["--ranks", "eight"], "rank counts"),
    (["--sizes", "1 parsec"], "cannot read size"),
    (["--sizes", "1GiB:1KiB"], "must go up"),
])
def test_collective_bad_arguments_one_line(capsys, args, match):
    assert main(["collective", "--topology", IB, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fabsim: error: ") and match in err[0]


def test_validate_collectives_json(capsys):
    assert main(["validate", "collectives", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["case"].startswith("DGXH100") for r in rows)
    assert all({"measured", "predicted", "error_pct"} <= set(r) for r in rows)
