"""Bad proposals through the command line: exit status 2, one line on stderr that names the
file and the field path, never a traceback. And the success path on the bundled proposals.

Each bad proposal is a bundled proposal with one thing changed.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import yaml

from sim.cli import main

TOPO = Path(__file__).resolve().parent.parent / "topologies"
PREFIX = "fabsim: error: "


def _bundled(name: str) -> dict:
    return yaml.safe_load((TOPO / name).read_text())


def _write(tmp_path: Path, data, name: str = "proposal.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def _catalog(tmp_path: Path, links: dict) -> Path:
    """A user catalog directory ``cat/`` with a links.yaml of ``links``; returns links.yaml."""
    d = (tmp_path / "cat").resolve()
    d.mkdir()
    p = d / "links.yaml"
    p.write_text(yaml.safe_dump({"links": links}, sort_keys=False))
    return p


def _ndr(**over) -> dict:
    """The bundled ib-ndr link entry with some fields replaced."""
    raw = yaml.safe_load((TOPO / "catalog" / "links.yaml").read_text())["links"]["ib-ndr"]
    raw.update(over)
    return raw


def _resolve(data, field: str):
    """The value at a dotted field path such as ``params.tiers[1].switch``; KeyError if none."""
    cur = data
    for tok in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        if tok.startswith("["):
            cur = cur[int(tok[1:-1])]
        else:
            if not isinstance(cur, dict) or tok not in cur:
                raise KeyError(field)
            cur = cur[tok]
    return cur


def _run_bad(argv: list[str], capsys) -> str:
    """Run the CLI, check the one-line error contract, return the text after the prefix."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX)
    return lines[0][len(PREFIX):]


# --------------------------------------------------------------------------- cases
# Each case builds a bad proposal in tmp_path and returns
# (proposal path, file named in the error, field named (None: no field), fragment of the
#  message, data the field must exist in (None: the field is absent, e.g. a missing field)).

def _small_fat_tree() -> dict:
    """The Llama 3 fat-tree proposal shrunk to 16 servers (fast to build)."""
    d = _bundled("llama3-16k-roce.yaml")
    d["params"]["servers"] = 16
    return d


def case_unknown_tier_switch(tmp_path):
    d = _small_fat_tree()
    d["params"]["tiers"][1]["switch"] = "QM9999"
    p = _write(tmp_path, d)
    return p, p, "params.tiers[1].switch", "'QM9999'", d


def case_unknown_node(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["params"]["node"] = "DGX-H999"
    p = _write(tmp_path, d)
    return p, p, "params.node", "unknown node 'DGX-H999'", d


def case_ocs_reconfigure_time_without_unit(tmp_path):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["reconfigure_time"] = 5
    p = _write(tmp_path, d)
    return p, p, "params.reconfigure_time", "bare number 5", d


def case_catalog_bandwidth_without_unit(tmp_path):
    cat = _catalog(tmp_path, {"ib-ndr": _ndr(bandwidth=400)})
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["catalog"] = "cat"
    p = _write(tmp_path, d)
    return p, cat, "links.ib-ndr.bandwidth", "bare number 400", yaml.safe_load(cat.read_text())


def case_catalog_negative_bandwidth(tmp_path):
    cat = _catalog(tmp_path, {"ib-ndr": _ndr(bandwidth="-400 Gb/s")})
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["catalog"] = "cat/"
    p = _write(tmp_path, d)
    return p, cat, "links.ib-ndr.bandwidth", "must not be negative", yaml.safe_load(cat.read_text())


def case_catalog_zero_bandwidth(tmp_path):
    cat = _catalog(tmp_path, {"ib-ndr": _ndr(bandwidth="0 Gb/s")})
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["catalog"] = "cat"
    p = _write(tmp_path, d)
    return p, cat, "links.ib-ndr.bandwidth", "greater than zero", yaml.safe_load(cat.read_text())


def case_catalog_dir_missing(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["catalog"] = "no-such-dir"
    p = _write(tmp_path, d)
    return p, p, "catalog", "not found", d


def case_down_ports_exceed_radix(tmp_path):
    # 100 down ports need 100 up ports at 1:1 on a 64-port Minipack2
    d = _small_fat_tree()
    del d["params"]["servers_per_leaf"]
    d["params"]["tiers"][0]["down_ports"] = 100
    p = _write(tmp_path, d)
    return p, p, "params.tiers[0]", "radix 64 too small for 100 down + 100 up", d


def case_spine_down_ports_exceed_radix(tmp_path):
    d = _small_fat_tree()
    d["params"]["tiers"][1]["down_ports"] = 560  # 560 down + ceil(560/7) = 80 up > 576
    p = _write(tmp_path, d)
    return p, p, "params.tiers[1]", "radix 576 too small for 560 down + 80 up", d


def case_port_speed_800g_on_400g_switch(tmp_path):
    d = _small_fat_tree()
    d["params"]["link"] = "eth-800g"
    p = _write(tmp_path, d)
    return p, p, "params.tiers[0].switch", "port speed mismatch", d


def case_port_speed_ndr_on_hdr_switch(tmp_path):
    d = _small_fat_tree()
    for t in d["params"]["tiers"]:
        t["switch"] = "QM8700"
    d["params"]["link"] = "ib-ndr"
    p = _write(tmp_path, d)
    return p, p, "params.tiers[0].switch", "QM8700 ports run at 200 Gb/s, links at 400 Gb/s", d


def case_disconnected(tmp_path):
    d = {"name": "two DGX H100 without a network", "builder": "scale_up",
         "params": {"node": "DGX-H100", "count": 2}}
    p = _write(tmp_path, d)
    return p, p, "builder", "disconnected: 2 separate parts", d


def case_top_level_typo_params(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["parms"] = d.pop("params")
    p = _write(tmp_path, d)
    return p, p, "parms", "unknown field 'parms'", d


def case_top_level_unknown_field(tmp_path):
    d = _bundled("dgx-h100-superpod-roce.yaml")
    d["rooting"] = d.pop("routing")
    p = _write(tmp_path, d)
    return p, p, "rooting", "unknown field 'rooting'", d


def case_params_unknown_field(tmp_path):
    d = _bundled("dgx-h100-superpod-2to1.yaml")
    d["params"]["servers"] = 32
    d["params"]["oversubscripton"] = d["params"].pop("oversubscription")
    p = _write(tmp_path, d)
    return p, p, "params.oversubscripton", "unknown field 'oversubscripton'", d


def case_unknown_builder(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["builder"] = "dragonfly"
    p = _write(tmp_path, d)
    return p, p, "builder", "'dragonfly' is not one of", d


def case_unknown_routing(tmp_path):
    d = _bundled("dgx-h100-superpod-roce.yaml")
    d["routing"] = "telepathy"
    p = _write(tmp_path, d)
    return p, p, "routing", "'telepathy' is not one of", d


def case_yaml_tab(tmp_path):
    text = (TOPO / "dgx-h100-superpod-ib.yaml").read_text()
    lines = text.splitlines()
    i = lines.index("params:") + 2  # second line under params, 1-based line number i + 1
    lines[i] = "\t" + lines[i].lstrip()
    p = _write(tmp_path, "\n".join(lines) + "\n")
    return p, p, None, f"invalid YAML at line {i + 1}", None


def case_yaml_indentation(tmp_path):
    text = "name: x\nbuilder: rail_optimized\nparams:\n  node: DGX-H100\n    servers: 128\n"
    p = _write(tmp_path, text)
    return p, p, None, "invalid YAML at line 5", None


def case_yaml_not_a_mapping(tmp_path):
    p = _write(tmp_path, "- builder: rail_optimized\n- params: {}\n")
    return p, p, None, "top level must be a mapping", None


def case_missing_file(tmp_path):
    p = tmp_path / "no-such-proposal.yaml"
    return p, p, None, "file not found", None


def case_oversubscription_below_one(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["params"]["oversubscription"] = 0.5
    p = _write(tmp_path, d)
    return p, p, "params.oversubscription", "must be >= 1.0, got 0.5", d


def case_ocs_slice_larger_than_pod(tmp_path):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["slices"] = [[32, 32, 32]]
    p = _write(tmp_path, d)
    # 32x32x32 chips = 8x8x8 = 512 cubes of 4x4x4, the pod has 64
    return p, p, "params.slices[0]", "needs 512 cubes", d


def case_ocs_slice_not_whole_cubes(tmp_path):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["slices"] = [[6, 4, 4]]
    p = _write(tmp_path, d)
    return p, p, "params.slices[0]", "not a whole number of 4x4x4 cubes", d


def case_ocs_slice_bad_shape(tmp_path):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["slices"] = [[16, 16]]
    p = _write(tmp_path, d)
    return p, p, "params.slices[0]", "expected a shape [x, y, z]", d


def case_ocs_cubes_exceed_ocs_radix(tmp_path):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["cubes"] = 69  # 2 x 69 = 138 ports > 136 on a Palomar OCS
    d["params"]["slices"] = []
    p = _write(tmp_path, d)
    return p, p, "params.cubes", "138 ports", d


def case_packet_switch_as_ocs(tmp_path):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["ocs"] = "QM9700"
    p = _write(tmp_path, d)
    return p, p, "params.ocs", "not an optical circuit switch", d


def case_string_for_number(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["params"]["servers"] = "many"
    p = _write(tmp_path, d)
    return p, p, "params.servers", "expected a whole number, got string 'many'", d


def case_zero_servers(tmp_path):
    d = _bundled("mi300x-roce.yaml")
    d["params"]["servers"] = 0
    p = _write(tmp_path, d)
    return p, p, "params.servers", "must be at least 1", d


def case_scale_up_link_as_scale_out(tmp_path):
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["params"]["link"] = "nvlink4"
    p = _write(tmp_path, d)
    return p, p, "params.link", "nvlink4 is a scale-up link, not a scale-out link", d


def case_host_link_as_scale_out(tmp_path):
    d = _bundled("gb200-nvl72-xdr.yaml")
    d["params"]["link"] = "pcie5"
    p = _write(tmp_path, d)
    return p, p, "params.link", "pcie5 is a host link", d


def case_nvswitch_as_scale_out_tier(tmp_path):
    d = _small_fat_tree()
    d["params"]["tiers"][0]["switch"] = "NVSwitch-gen4"
    p = _write(tmp_path, d)
    return p, p, "params.tiers[0].switch", "nvswitch switch, not a packet switch", d


def case_tiers_not_a_list(tmp_path):
    d = _small_fat_tree()
    d["params"]["tiers"] = "Minipack2"
    p = _write(tmp_path, d)
    return p, p, "params.tiers", "expected a list of tiers", d


def case_fat_tree_two_tiers(tmp_path):
    d = _small_fat_tree()
    d["params"]["tiers"] = d["params"]["tiers"][:2]
    p = _write(tmp_path, d)
    return p, p, "params.tiers", "a fat-tree has 3 tiers, got 2", d


CASES = {name[len("case_"):]: fn for name, fn in sorted(globals().items())
         if name.startswith("case_")}


def test_enough_distinct_cases():
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_proposal(case, tmp_path, capsys):
    path, bad_file, field, fragment, data = CASES[case](tmp_path)
    msg = _run_bad(["topo", "show", str(path)], capsys)
    where = f"{bad_file}: " + (f"{field}: " if field else "")
    assert msg.startswith(where), msg
    assert fragment in msg, msg
    if field and data is not None:
        _resolve(data, field)  # the field named exists in the file named


def test_bad_proposal_with_json_flag_is_the_same_error(tmp_path, capsys):
    path, _, field, fragment, _ = case_unknown_node(tmp_path)
    msg = _run_bad(["topo", "show", "--json", str(path)], capsys)
    assert msg.startswith(f"{path}: {field}: ") and fragment in msg


def test_bad_override(tmp_path, capsys):
    path = TOPO / "dgx-h100-superpod-ib.yaml"
    msg = _run_bad(["topo", "show", str(path), "--set", "params.servers=-3"], capsys)
    assert msg.startswith(f"{path}: params.servers: must be at least 1")
    msg = _run_bad(["topo", "show", str(path), "--set", "params.servers"], capsys)
    assert msg.startswith(f"{path}: override 'params.servers' is not of the form")


def test_an_override_indexes_a_list_and_a_bad_index_is_one_line(tmp_path, capsys):
    path = TOPO / "llama3-16k-roce.yaml"
    from sim.fabric import load_topology

    f7 = load_topology(path)
    f1 = load_topology(path, ["params.tiers[1].oversubscription=1"])
    def cores(f):
        return sum(1 for _, d in f.graph.nodes(data=True) if d.get("tier") == 3)

    # 1:1 above the pods needs far more core capacity than Meta's 1:7: the override reached
    # the second tier of the list (32 vs 8 cores of 576 ports)
    assert cores(f1) >= 4 * cores(f7) > 0
    for over, frag in [("params.tiers[3].oversubscription=1",
                        "index 3 is outside the list of 3"),
                       ("params.tiers.oversubscription=1", "'tiers' is a list: index it"),
                       ("params.tiers[x]=1", "bad index in 'tiers[x]'"),
                       ("params[0]=1", "'params' is not a list")]:
        msg = _run_bad(["topo", "show", str(path), "--set", over], capsys)
        field = over.split("=")[0]
        assert msg.startswith(f"{path}: {field}: ") and frag in msg, msg


SVC = Path(__file__).resolve().parent.parent / "workloads" / "llama3-70b-serve-16x.yaml"


@pytest.mark.parametrize("name, content, fragment", [
    ("dup.yaml", b"name: x\nbuilder: scale_up\nname: y\n",
     "duplicate key 'name' (first at line 1)"),
    ("nested-dup.yaml", b"name: x\nbuilder: scale_up\nparams: {node: DGX-H100, node: B}\n",
     "duplicate key 'node'"),
    ("latin1.yaml", "name: caf\u00e9\nbuilder: scale_up\n".encode("latin-1"),
     "not UTF-8 text (byte 0xe9"),
    ("utf16.yaml", "name: x\n".encode("utf-16"), "not UTF-8 text (byte 0xff at offset 0)"),
    ("binary.yaml", b"name: x\x00\x01\x02", "not a text file"),
])
def test_a_file_that_is_not_clean_utf8_yaml_is_one_line(tmp_path, capsys, name, content,
                                                         fragment):
    """Every file goes through one reader (sim.spec.load_yaml): bytes that are not UTF-8,
    NUL bytes and a key given twice (YAML would let the last win silently) end in one
    line naming the file."""
    p = tmp_path / name
    p.write_bytes(content)
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert msg.startswith(f"{p}: ") and fragment in msg, msg
    msg = _run_bad(["serve", "--topology", str(TOPO / "dgx-h100-superpod-ib.yaml"),
                    "--service", str(p), "--duration", "1s"], capsys)
    assert msg.startswith(f"{p}: ") and fragment in msg, msg


def test_a_directory_given_as_a_file_is_one_line(tmp_path, capsys):
    msg = _run_bad(["topo", "show", str(tmp_path)], capsys)
    assert msg == f"{tmp_path}: is a directory, not a file"


@pytest.mark.parametrize("over, field, fragment", [
    ("batching.kv_fraction=.nan", "batching.kv_fraction", "must be a finite number, got nan"),
    ("arrival.cv=.inf", "arrival.cv", "must be a finite number, got inf"),
    ("arrival.rate=-.inf", "arrival.rate", "must be a finite number"),
    ("batching.max_batch=[1,", "batching.max_batch", "invalid YAML"),
    ("=3", None, "override path '' is empty"),
    ("arrival.rate=1e12", "arrival.rate", "more than the 10,000,000 one run holds"),
    ("arrival.rate=fast", "arrival.rate", "expected a number, got string 'fast'"),
])
def test_nan_inf_and_unparsable_overrides_are_one_line(capsys, over, field, fragment):
    msg = _run_bad(["serve", "--topology", str(TOPO / "dgx-h100-superpod-ib.yaml"),
                    "--service", str(SVC), "--wset", over, "--duration", "1s"], capsys)
    assert fragment in msg, msg
    assert msg.split(": ")[0].endswith(SVC.name), msg
    if field:
        assert f": {field}: " in msg, msg


@pytest.mark.parametrize("value, frag", [
    ("1e9", "1e+09:1 cannot be built with 32 downlinks per switch: one uplink gives 32:1"),
    (".inf", "must be a finite number, got inf"),
])
def test_an_unbuildable_oversubscription_names_the_field_not_the_radix(capsys, value, frag):
    """Asking for more than one uplink can give was built silently at 32:1; infinity was
    reported as a radix problem."""
    path = TOPO / "dgx-h100-superpod-2to1.yaml"
    msg = _run_bad(["topo", "show", str(path), "--set", f"params.oversubscription={value}"],
                   capsys)
    assert msg.startswith(f"{path}: params.oversubscription: ") and frag in msg, msg


def test_a_link_given_in_gb_per_s_instead_of_gbit_says_so(tmp_path, capsys):
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "links.yaml").write_text(yaml.safe_dump({"links": {"my-400g": {
        "name": "my 400G", "kind": "scale-out", "protocol": "infiniband",
        "bandwidth": "400 GB/s", "latency": "500 ns", "protocol_efficiency": 0.95,
        "source": "typo test", "as_of": "2024-01"}}}))
    p = _write(tmp_path, {"name": "t", "builder": "leaf_spine", "catalog": "cat",
                          "params": {"node": "DGX-H100", "servers": 4, "leaf": "QM9700",
                                     "spine": "QM9700", "link": "my-400g"}})
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert "links at 3200 Gb/s" in msg and "GB/s for Gb/s" in msg, msg


def test_an_infiniband_switch_cabled_with_ethernet_links_is_one_line(capsys):
    path = TOPO / "dgx-h100-superpod-ib.yaml"
    msg = _run_bad(["topo", "show", str(path), "--set", "params.link=eth-400g"], capsys)
    assert msg == (f"{path}: params.leaf: QM9700 is a switch for infiniband links "
                   "(ib-ndr); the fabric's links are roce (eth-400g): pick a roce switch "
                   "or infiniband links"), msg


def test_good_then_bad_proposal_fails(tmp_path, capsys):
    """With several proposals, the first bad one ends the run with status 2."""
    bad = _write(tmp_path, {"name": "x", "builder": "scale_up",
                            "params": {"node": "DGX-H100", "count": 1, "colour": "red"}})
    good = _write(tmp_path, {"name": "y", "builder": "scale_up",
                             "params": {"node": "DGX-H100", "count": 1}}, "good.yaml")
    rc = main(["topo", "show", str(good), str(bad)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err == f"{PREFIX}{bad}: params.colour: unknown field 'colour' (known here: count, node)\n"
    assert "y" in out


# ------------------------------------- regressions (bugs found by these tests, now fixed)
def _leaf_spine_family_cases(tmp_path):
    a = _bundled("dgx-h100-superpod-ib.yaml")
    a["params"]["leaf"] = "QM9999"
    b = _bundled("dgx-h100-superpod-roce.yaml")
    b["params"]["link"] = "eth-800g"  # TH4 ports are 400G
    c = _bundled("gb200-nvl72-xdr.yaml")
    c["params"]["servers_per_leaf"] = 2  # 144 NICs + 144 uplinks on a 144-port Q3400
    return {"rail_optimized-unknown-leaf": (a, {"params.leaf"}),
            "rail_optimized-port-speed": (b, {"params.leaf", "params.link"}),
            "leaf_spine-radix": (c, {"params.servers_per_leaf", "params.leaf"})}


@pytest.mark.parametrize("case", ["rail_optimized-unknown-leaf", "rail_optimized-port-speed",
                                  "leaf_spine-radix"])
def test_leaf_spine_family_errors_name_fields_of_the_file(case, tmp_path, capsys):
    data, fields = _leaf_spine_family_cases(tmp_path)[case]
    p = _write(tmp_path, data)
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert msg.startswith(f"{p}: ")
    field = msg[len(f"{p}: "):].split(": ")[0]
    assert field in fields, msg


def test_unknown_switch_message_spelling(tmp_path, capsys):
    p, _, _, _, _ = case_unknown_tier_switch(tmp_path)
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert "unknown switch 'QM9999'" in msg


def test_scale_up_unknown_node_names_params_node(tmp_path, capsys):
    p = _write(tmp_path, {"name": "x", "builder": "scale_up",
                          "params": {"node": "DGX-H999", "count": 1}})
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert msg.startswith(f"{p}: params.node: ")


def test_ocs_slice_mapping_rejects_unknown_keys(tmp_path, capsys):
    d = _bundled("tpu-v4-pod-ocs.yaml")
    d["params"]["slices"] = [{"shape": [8, 8, 16], "twistd": True}]
    p = _write(tmp_path, d)
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert msg.startswith(f"{p}: params.slices[0]")
    assert "twistd" in msg


def test_overflowing_catalog_quantity_is_a_one_line_error(tmp_path, capsys):
    cat = _catalog(tmp_path, {"ib-ndr": _ndr(bandwidth="1e400 Gb/s")})
    d = _bundled("dgx-h100-superpod-ib.yaml")
    d["catalog"] = "cat"
    p = _write(tmp_path, d)
    msg = _run_bad(["topo", "show", str(p)], capsys)
    assert msg.startswith(f"{cat}: links.ib-ndr.bandwidth: ")


# ------------------------------------------------------------------- success path
BUNDLED = sorted(p.name for p in TOPO.glob("*.yaml"))
LARGE = "llama3-16k-roce.yaml"  # 16,384 GPUs: only checked to be present (slow to build)

# closed forms per proposal: accelerators, scale-up and scale-out injection per accelerator
# (bytes/s per direction), bisection per accelerator
EXPECTED = {
    # 128 DGX H100: 18 x 25 GB/s NVLink4, one 400G NIC per GPU, 1:1 -> 50 GB/s bisection
    "dgx-h100-superpod-ib.yaml": (1024, 450e9, 50e9, {"scale_out": 50e9}),
    # same with 16 of 32 leaf ports up: 2:1 -> half the bisection
    "dgx-h100-superpod-2to1.yaml": (1024, 450e9, 50e9, {"scale_out": 25e9}),
    "dgx-h100-superpod-rail-only.yaml": (1024, 450e9, 50e9, None),
    "dgx-h100-superpod-roce.yaml": (1024, 450e9, 50e9, {"scale_out": 50e9}),
    # 14 NVL72 racks: 18 x 50 GB/s NVLink5, one 800G XDR NIC per GPU, non-blocking
    "gb200-nvl72-xdr.yaml": (1008, 900e9, 100e9, {"scale_out": 100e9}),
    # xGMI: 7 peers x 64 GB/s
    "mi300x-roce.yaml": (1024, 448e9, 50e9, {"scale_out": 50e9}),
    # 64 cubes of 64 chips, 6 x 45 GB/s ICI, no packet network; one 16^3 torus slice: the
    # halving cut crosses 2 x 16 x 16 links of 45 GB/s = 23.04 TB/s, over 2,048 chips
    "tpu-v4-pod-ocs.yaml": (4096, 270e9, 0.0, {"torus": 2 * 16 * 16 * 45e9 / 2048}),
}

KEYS = ("accelerators", "switches", "cables_by_tech", "transceivers", "injection_scale_up_Bps",
        "injection_scale_out_Bps", "bisection_per_accelerator_Bps", "oversubscription",
        "diameter_switch_hops")


def test_bundled_proposals_are_all_known():
    assert LARGE in BUNDLED
    assert len(BUNDLED) == 8
    assert set(BUNDLED) == set(EXPECTED) | {LARGE}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_topo_show_bundled(name, capsys):
    path = str(TOPO / name)
    assert main(["topo", "show", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert _bundled(name)["name"] in out

    assert main(["topo", "show", "--json", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    s = json.loads(out)
    for k in KEYS:
        assert k in s, k
    n, su, so, bis = EXPECTED[name]
    assert s["accelerators"] == n
    assert s["injection_scale_up_Bps"] == su
    assert s["injection_scale_out_Bps"] == so
    if bis is not None:
        assert s["bisection_per_accelerator_Bps"] == pytest.approx(bis, rel=1e-12)
    assert isinstance(s["diameter_switch_hops"], int) and s["diameter_switch_hops"] >= 1
    assert s["file"] == path
    if name.startswith("dgx-h100-superpod-") and "rail-only" not in name:
        # rail-optimized 2-tier Clos: leaf, spine, leaf
        assert s["diameter_switch_hops"] == 3
        assert s["oversubscription"] == {"leaf": 2.0 if "2to1" in name else 1.0}
        assert s["cables_by_tech"]["nvlink4"] == 128 * 8 * 18
        assert sum(v for k, v in s["switches"].items() if k.startswith("NVSwitch-gen4")) == 128 * 4


def test_topo_show_json_several(capsys):
    names = ["dgx-h100-superpod-ib.yaml", "gb200-nvl72-xdr.yaml"]
    assert main(["topo", "show", "--json", *[str(TOPO / n) for n in names]]) == 0
    out, _ = capsys.readouterr()
    s = json.loads(out)
    assert isinstance(s, list) and [x["accelerators"] for x in s] == [1024, 1008]


def test_hbm_in_tbit_instead_of_tbyte_is_a_one_line_warning_and_the_run_goes_on(tmp_path,
                                                                              capsys):
    """Legal but almost surely a unit mistake: H100's HBM written as 3.35 Tb/s (8x too
    slow) reads its 80 GB five times a second where every shipping part does 20-60."""
    import warnings

    from sim.catalog import load_catalog
    from sim.errors import PlausibilityWarning

    src = yaml.safe_load((TOPO / "catalog" / "accelerators.yaml").read_text())
    entry = dict(src["accelerators"]["H100-SXM"])
    entry["hbm_bandwidth"] = "3.35 Tb/s"
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "accelerators.yaml").write_text(yaml.safe_dump({"accelerators": {"H100-SXM":
                                                                              entry}}))
    with pytest.warns(PlausibilityWarning, match=r"accelerators\.H100-SXM\.hbm_bandwidth: "
                      r"0\.41875 TB/s reads the whole 85\.\d+ GB HBM 4\.9 times a second"):
        load_catalog(cat)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlausibilityWarning)
        load_catalog()  # the bundled catalog has no such value
    cli_cat = tmp_path / "cat2"  # a catalog not loaded yet in this process
    cli_cat.mkdir()
    (cli_cat / "accelerators.yaml").write_text((cat / "accelerators.yaml").read_text())
    p = _write(tmp_path, {"name": "t", "builder": "scale_up", "catalog": "cat2",
                          "params": {"node": "DGX-H100", "count": 1}})
    rc = main(["topo", "show", str(p)])
    out, err = capsys.readouterr()
    assert rc == 0 and "H100" in out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fabsim: warning: ") and \
        "hbm_bandwidth" in lines[0] and "Tb/s written for TB/s?" in lines[0], err


@pytest.mark.parametrize("argv, frag", [
    (["serve", "--topology", "{T}/dgx-h100-superpod-ib.yaml", "--service", str(SVC),
      "--duration", "600s", "--plot", "{tmp}/missing/x.png"], "--plot: folder"),
    (["compare", "{T}/dgx-h100-superpod-ib.yaml", "--workload",
      "{W}/llama3-70b-1k.yaml", "-o", "{tmp}/afile/report"], "is a file, so"),
    (["sweep", "{S}/rail-only.yaml", "-o", "{tmp}/afile"], "is a file, not a folder"),
    (["topo", "draw", "{T}/dgx-h100-superpod-ib.yaml", "-o", "{tmp}/missing/f.png"],
     "does not exist"),
])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_simulation(
        tmp_path, capsys, argv, frag):
    """-o / --plot into a missing folder or under a regular file: one line at once (it
    was a traceback after the whole simulation)."""
    import time

    (tmp_path / "afile").write_text("x")
    root = TOPO.parent
    sub = {"{T}": str(TOPO), "{W}": str(root / "workloads"),
           "{S}": str(root / "experiments" / "studies"), "{tmp}": str(tmp_path)}
    argv = [functools.reduce(lambda a, kv: a.replace(*kv), sub.items(), x) for x in argv]
    t0 = time.perf_counter()
    msg = _run_bad(argv, capsys)
    assert frag in msg, msg
    assert time.perf_counter() - t0 < 5.0  # refused before simulating
