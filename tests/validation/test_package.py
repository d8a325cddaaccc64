"""The validation package reads only the folders it is given, and ``fabsim validate``
says in one line which folder it could not find."""

from __future__ import annotations

from pathlib import Path

import sim.validation
from sim.cli import main

PACKAGE = Path(sim.validation.__file__).resolve().parent


def test_no_path_from_the_package_location_or_the_environment():
    sources = sorted(PACKAGE.glob("*.py"))
    assert {p.name for p in sources} >= {"__init__.py", "data.py", "collectives.py",
                                         "training.py", "inference.py", "mlperf.py"}
    for p in sources:
        text = p.read_text()
        assert "__file__" not in text, p.name
        assert "os.environ" not in text and "getenv" not in text, p.name


def test_missing_data_folder_is_one_line_naming_the_flag(capsys):
    assert main(["validate", "training", "--data", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fabsim: error: ")
    assert "--data" in err[0] and "/nonexistent" in err[0]


def test_missing_shared_folder_is_one_line_naming_the_flag(capsys, tmp_path):
    missing = tmp_path / "no-such-folder"
    assert main(["validate", "collectives", "--shared", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shared" in err[0] and str(missing) in err[0]


def test_folders_given_on_the_command_line(capsys, shared_dir, tmp_path, monkeypatch):
    """Outside a checkout, with --shared given, the collectives need no other folder."""
    import json

    monkeypatch.chdir(tmp_path)
    assert main(["validate", "collectives", "--json", "--shared", str(shared_dir)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["case"].startswith("GTC25") for r in rows)
