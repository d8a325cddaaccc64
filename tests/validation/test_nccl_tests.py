"""nccl-tests output import: the table's columns in the formats nccl-tests prints, the rank
count and collective from the header, bad files, and the side-by-side CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sim.cli import main
from sim.errors import ConfigError
from sim.validation.nccl_tests import parse_nccl_tests, read_nccl_tests

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "nccl_tests_allreduce_8gpu.txt"

# all_gather_perf of nccl-tests 2.13 on 16 ranks: 'none' as redop, root -1, #wrong N/A
ALLGATHER = """# Collective test starting: all_gather_perf
# nThread 1 nGpus 1 minBytes 1048576 maxBytes 1073741824 step: 1024(factor)
""" + "".join(f"#  Rank {i:2d} Group  0 Pid {i} on host{i // 8} device  {i % 8} [0x1] H100\n"
              for i in range(16)) + """#
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
     1048576         16384     float    none      -1    60.00   17.48   16.38    N/A    59.00   17.77   16.66    N/A
  1073741824      16777216     float    none      -1  7000.00  153.39  143.80    N/A  6990.00  153.61  144.01    N/A
"""

# an old-style table without redop and root columns (nccl-tests < 2.10 all_gather)
OLD = """#  Rank  0 Pid 1 on a device  0 [0x1] A100
#  Rank  1 Pid 2 on a device  1 [0x2] A100
#       size         count    type     time   algbw   busbw  error     time   algbw   busbw  error
       65536          8192   float    20.50    3.20    1.60  0e+00    20.10    3.26    1.63  0e+00
"""


def test_reads_the_out_of_place_columns_and_the_ranks():
    run = read_nccl_tests(SAMPLE)
    assert run.ranks == 8
    assert list(run.rows["size_bytes"]) == [8, 1048576, 67108864]
    assert list(run.rows["time_us"]) == [13.67, 27.37, 324.7]  # out-of-place, not in-place
    assert list(run.rows["busbw_GBps"]) == [0.0, 67.04, 361.67]


def test_collective_name_none_redop_and_na_columns():
    run = parse_nccl_tests(ALLGATHER)
    assert run.op == "all_gather" and run.ranks == 16
    assert list(run.rows["time_us"]) == [60.0, 7000.0]
    # busbw = algbw x (n - 1) / n for all-gather, as the table says
    r = run.rows.iloc[1]
    assert r.busbw_GBps == pytest.approx(r.algbw_GBps * 15 / 16, rel=1e-3)


def test_old_table_without_redop_and_root():
    run = parse_nccl_tests(OLD)
    assert run.ranks == 2 and run.op is None
    assert run.rows.iloc[0].tolist() == [65536, 20.5, 3.2, 1.6]


def test_bad_files_name_the_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("# nothing here\nhello world\n")
    with pytest.raises(ConfigError, match="empty.txt.*no nccl-tests table"):
        read_nccl_tests(p)
    with pytest.raises(ConfigError, match="missing.txt.*cannot read"):
        read_nccl_tests(tmp_path / "missing.txt")


def test_cli_puts_prediction_next_to_measurement(capsys):
    rc = main(["collective", "--topology", str(ROOT / "topologies/dgx-h100-superpod-ib.yaml"),
               "--measured", str(SAMPLE), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["op"] == "all_reduce" and out["ranks"] == 8
    assert [r["size_bytes"] for r in out["rows"]] == [8, 1048576, 67108864]
    for r in out["rows"]:
        assert r["time_error_pct"] == pytest.approx(
            (r["predicted_us"] / r["measured_us"] - 1) * 100)
        assert not math.isnan(r["predicted_busbw_GBps"])


def test_cli_bad_measured_file_is_one_line(tmp_path, capsys):
    p = tmp_path / "x.txt"
    p.write_text("garbage\n")
    rc = main(["collective", "--topology", str(ROOT / "topologies/dgx-h100-superpod-ib.yaml"),
               "--measured", str(p)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "x.txt" in err
