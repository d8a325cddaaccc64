"""Tests of the bundled hardware catalog and of user catalog directories.

Published numbers are from /work/shared/validation/hardware_catalog.tsv (vendor datasheets and
the ml-engineering tables it cites); they are written out here so the test does not depend on
that file.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import pytest
import yaml

from sim.catalog import BUNDLED_CATALOG, PRECISIONS, Catalog, load_catalog
from sim.errors import ConfigError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SECTIONS = ("accelerators", "links", "switches", "transceivers", "cables", "nodes")


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _entries(cat):
    for section in SECTIONS:
        for key, entry in getattr(cat, section).items():
            yield section, key, entry


@functools.cache
def _bundled_docs() -> dict:
    out = {}
    for path in sorted(BUNDLED_CATALOG.glob("*.yaml")):
        out.update(yaml.load(path.read_text(), Loader=_Loader))
    return out


def _bundled_yaml(section: str) -> dict:
    """The raw bundled entries of one section (a copy, for building user catalogs)."""
    return copy.deepcopy(_bundled_docs()[section])


# ------------------------------------------------------------------------ provenance
def test_every_section_is_populated(cat):
    for section in SECTIONS:
        assert getattr(cat, section), section


def test_every_entry_has_source_and_as_of(cat):
    for section, key, e in _entries(cat):
        p = e.provenance
        assert p.source.strip(), (section, key)
        assert p.as_of.strip(), (section, key)
        assert re.fullmatch(r"(19|20)\d\d-(0[1-9]|1[0-2])(-\d\d)?", p.as_of), (section, key, p.as_of)


def test_estimate_names_fields_of_the_entry(cat):
    """Every name in ``estimate`` is a key written in that entry of the bundled YAML."""
    for section in SECTIONS:
        raw = _bundled_yaml(section)
        for key, entry in getattr(cat, section).items():
            for name in entry.provenance.estimate:
                assert name in raw[key], (section, key, name)
                assert name not in ("source", "as_of", "estimate", "name"), (section, key, name)


def test_estimated_entries_say_so_in_their_source(cat):
    for section, key, e in _entries(cat):
        if e.provenance.estimate:
            assert "estimate" in e.provenance.source.lower(), (section, key)


def test_every_price_is_marked_estimate(cat):
    """No authoritative list prices were found (TSV: 'not found, do not assume'), so every
    entry that has a price must list it in ``estimate``."""
    unmarked = [(s, k) for s, k, e in _entries(cat)
                if hasattr(e, "price_USD") and "price" not in e.provenance.estimate]
    assert unmarked == []


# ------------------------------------------------------------------- consistency
def test_scale_up_bandwidth_is_links_times_link_bandwidth(cat):
    for key, a in cat.accelerators.items():
        link = cat.links[a.scale_up_link]
        assert link.kind == "scale-up", key
        assert a.scale_up_bandwidth_Bps == a.scale_up_links * link.bandwidth_Bps, key


def test_switch_port_speed_equals_its_link(cat):
    for key, s in cat.switches.items():
        link = cat.links[s.link]
        assert s.port_speed_Bps == link.bandwidth_Bps, key
        want = {"nvswitch": "scale-up", "packet": "scale-out", "ocs": "optical-circuit"}[s.kind]
        assert link.kind == want, key
        assert (s.reconfigure_time_s is not None) == (s.kind == "ocs"), key


def test_nodes_are_consistent(cat):
    for key, n in cat.nodes.items():
        acc = cat.accelerators[n.accelerator]
        if n.nic_link:
            assert cat.links[n.nic_link].kind == "scale-out", key
        if n.host_link:
            assert cat.links[n.host_link].kind == "host", key
        if n.nics:
            assert n.accelerators % n.nics == 0, key
        if n.scale_up == "nvswitch":
            sw = cat.switches[n.scale_up_switch]
            assert sw.kind == "nvswitch", key
            assert sw.port_speed_Bps == cat.links[acc.scale_up_link].bandwidth_Bps, key
            assert n.accelerators * acc.scale_up_links <= n.scale_up_switches * sw.radix, key
        if n.scale_up == "torus":
            prod = 1
            for d in n.torus_dims:
                prod *= d
            assert prod == n.accelerators, key
        if n.scale_up == "mesh":
            assert acc.scale_up_links >= n.accelerators - 1, key


def test_accelerator_ranges(cat):
    for key, a in cat.accelerators.items():
        assert set(a.peak_flops) <= set(PRECISIONS), key
        assert "bf16" in a.peak_flops, key
        assert set(a.matmul_efficiency) <= set(a.peak_flops), key
        assert all(0 < v <= 1 for v in a.matmul_efficiency.values()), key
        assert 0 < a.idle_power_W <= a.tdp_W, key
        if "fp8" in a.peak_flops:
            assert a.peak_flops["fp8"] >= a.peak_flops["bf16"], key
        if "fp4" in a.peak_flops:
            assert a.peak_flops["fp4"] >= a.peak_flops["fp8"], key


# --------------------------------------------------------------- published numbers
@pytest.mark.parametrize(
    ("acc", "bf16", "hbm_B", "hbm_Bps"),
    [
        # NVIDIA parts: the total nvidia-smi reports (MiB), not the decimal product name
        ("A100-80GB", 312e12, 81920 * 2**20, 2.0e12),
        ("H100-SXM", 989e12, 81559 * 2**20, 3.35e12),
        ("H200-SXM", 989e12, 143771 * 2**20, 4.8e12),
        ("B200", 2250e12, 180e9, 8.0e12),
        ("GB200", 2500e12, 186e9, 8.0e12),
        ("MI300X", 1300e12, 192e9, 5.3e12),
        ("TPUv4", 275e12, 32 * 2**30, 1200e9),
    ],
)
def test_published_accelerator_numbers(cat, acc, bf16, hbm_B, hbm_Bps):
    a = cat.accelerators[acc]
    assert a.peak_flops["bf16"] == bf16
    assert a.hbm_capacity_B == hbm_B
    assert a.hbm_bandwidth_Bps == hbm_Bps


@pytest.mark.parametrize(
    ("acc", "scale_up_Bps", "tdp_W"),
    [
        ("A100-80GB", 300e9, 400.0),  # NVLink3 600 GB/s bidirectional
        ("H100-SXM", 450e9, 700.0),  # 18 x NVLink4, 900 GB/s bidirectional
        ("H200-SXM", 450e9, 700.0),
        ("B200", 900e9, 1000.0),  # NVLink5 1.8 TB/s bidirectional
        ("GB200", 900e9, 1200.0),
        ("MI300X", 448e9, 750.0),  # 7 peers x 64 GB/s
    ],
)
def test_published_scale_up_and_power(cat, acc, scale_up_Bps, tdp_W):
    a = cat.accelerators[acc]
    assert a.scale_up_bandwidth_Bps == scale_up_Bps
    assert a.tdp_W == tdp_W


def test_fp8_peaks(cat):
    assert cat.accelerators["H100-SXM"].peak_flops["fp8"] == 1979e12
    assert cat.accelerators["B200"].peak_flops["fp8"] == 4500e12
    assert cat.accelerators["B200"].peak_flops["fp4"] == 9000e12


@pytest.mark.parametrize(
    ("acc", "prec", "mamf_tflops", "peak_tflops"),
    [
        ("H100-SXM", "bf16", 794.5, 989),
        ("H100-SXM", "fp8", 1402.6, 1979),
        ("A100-80GB", "bf16", 271.2, 312),
        ("B200", "bf16", 1745, 2250),
        ("MI300X", "bf16", 668.4, 1300),
    ],
)
def test_matmul_efficiency_is_measured_over_peak(cat, acc, prec, mamf_tflops, peak_tflops):
    eff = cat.accelerators[acc].matmul_efficiency[prec]
    assert abs(eff - mamf_tflops / peak_tflops) < 0.005


def test_link_line_rates(cat):
    bits = {"ib-hdr": 200, "ib-ndr": 400, "ib-xdr": 800, "eth-100g": 100, "eth-200g": 200,
            "eth-400g": 400, "eth-800g": 800}
    for key, gbps in bits.items():
        assert cat.links[key].bandwidth_Bps == gbps * 1e9 / 8, key
        assert cat.links[key].kind == "scale-out", key
    assert cat.links["pcie4"].kind == cat.links["pcie5"].kind == "host"
    assert cat.links["pcie5"].bandwidth_Bps == 2 * cat.links["pcie4"].bandwidth_Bps


def test_switch_published_shapes(cat):
    # QM9700: 64 x 400G NDR (51.2 Tb/s); QM8700: 40 x 200G HDR (16 Tb/s); TH4: 25.6 Tb/s
    assert (cat.switches["QM9700"].radix, cat.switches["QM9700"].port_speed_Bps) == (64, 50e9)
    assert (cat.switches["QM8700"].radix, cat.switches["QM8700"].port_speed_Bps) == (40, 25e9)
    assert cat.switches["TH4"].radix * cat.switches["TH4"].port_speed_Bps * 8 == 25.6e12
    assert cat.switches["TH5"].radix * cat.switches["TH5"].port_speed_Bps * 8 == 51.2e12
    assert cat.switches["Palomar-OCS"].radix == 136
    assert cat.switches["Palomar-OCS"].kind == "ocs"


def test_node_shapes(cat):
    assert cat.nodes["DGX-H100"].accelerators == 8
    assert cat.nodes["DGX-H100"].scale_up_switches == 4
    assert cat.nodes["GB200-NVL72"].accelerators == 72
    assert cat.nodes["GB200-NVL72"].scale_up_switches == 18
    assert cat.nodes["TPUv4-cube"].torus_dims == (4, 4, 4)
    assert cat.nodes["MI300X-8"].scale_up == "mesh"


REQUIRED = {
    "accelerators": ["A100-80GB", "H100-SXM", "H200-SXM", "B200", "GB200", "MI300X", "MI325X",
                     "TPUv4", "TPUv5e", "TPUv5p", "TPUv6e", "Trainium2"],
    "nodes": ["DGX-A100", "DGX-H100", "HGX-H200", "DGX-B200", "GB200-NVL72", "MI300X-8",
              "TPUv4-cube"],
    "links": ["nvlink3", "nvlink4", "nvlink5", "xgmi3", "pcie4", "pcie5", "ib-hdr", "ib-ndr",
              "ib-xdr", "eth-100g", "eth-200g", "eth-400g", "eth-800g", "ici-v4", "ocs-circuit"],
    "switches": ["NVSwitch-gen3", "NVSwitch-gen4", "NVSwitch-gen5", "QM8700", "QM9700", "Q3400",
                 "SN5600", "TH4", "TH5", "Palomar-OCS"],
}


@pytest.mark.parametrize("section", sorted(REQUIRED))
def test_required_ids_exist(cat, section):
    missing = [k for k in REQUIRED[section] if k not in getattr(cat, section)]
    assert missing == []


def test_catalog_is_cached(cat):
    assert load_catalog() is cat
    assert load_catalog(BUNDLED_CATALOG) is cat


# --------------------------------------------------------------- user catalogs
def _link(**over) -> dict:
    d = {"name": "test link", "kind": "scale-out", "protocol": "roce", "bandwidth": "400 Gb/s",
         "latency": "1 us", "protocol_efficiency": 0.97, "source": "unit test",
         "as_of": "2024-01"}
    d.update(over)
    return d


def _h100(**over) -> dict:
    d = _bundled_yaml("accelerators")["H100-SXM"]
    d.update(over)
    return d


def _write_catalog(tmp_path: Path, files: dict[str, dict]) -> Path:
    d = (tmp_path / "cat").resolve()
    d.mkdir()
    for name, doc in files.items():
        (d / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return d


def test_user_catalog_overrides_and_extends(tmp_path, cat):
    d = _write_catalog(tmp_path, {
        "acc.yaml": {"accelerators": {"H100-SXM": _h100(price="25000 USD", name="cheap H100"),
                                      "H100-test": _h100(hbm_capacity="96 GB")}},
        "links.yaml": {"links": {"eth-1600g": _link(bandwidth="1600 Gb/s")}},
    })
    user = load_catalog(d)
    assert user is not cat
    h = user.accelerators["H100-SXM"]
    assert h.price_USD == 25000.0
    assert h.name == "cheap H100"
    assert user.files[("accelerators", "H100-SXM")] == str(d / "acc.yaml")
    assert user.accelerators["H100-test"].hbm_capacity_B == 96e9
    assert user.links["eth-1600g"].bandwidth_Bps == 200e9
    # everything else is the bundled entry, and the bundled catalog is unchanged
    for section in SECTIONS:
        assert set(getattr(cat, section)) <= set(getattr(user, section))
    assert user.accelerators["A100-80GB"] == cat.accelerators["A100-80GB"]
    assert user.nodes["DGX-H100"] == cat.nodes["DGX-H100"]
    assert cat.accelerators["H100-SXM"].price_USD == 30000.0
    assert "H100-test" not in cat.accelerators
    assert load_catalog(d) is user


def test_overriding_a_link_is_checked_against_bundled_accelerators(tmp_path):
    d = _write_catalog(tmp_path, {"links.yaml": {"links": {
        "nvlink4": _link(kind="scale-up", protocol="nvlink", bandwidth="50 GB/s")}}})
    with pytest.raises(ConfigError) as ei:
        load_catalog(d)
    err = ei.value
    assert err.file == str(BUNDLED_CATALOG / "accelerators.yaml")
    assert re.fullmatch(r"accelerators\.(H100-SXM|H200-SXM)\.scale_up_bandwidth", err.field)
    assert "scale_up_links (18)" in str(err)


ACC_FILE = "accelerators.yaml"
LINK_FILE = "links.yaml"


def _bad_cases():
    no_source = _link()
    del no_source["source"]
    no_as_of = _link()
    del no_as_of["as_of"]
    node = copy.deepcopy(_bundled_yaml("nodes")["DGX-H100"])
    torus = copy.deepcopy(_bundled_yaml("nodes")["TPUv4-cube"])
    torus["scale_up"]["dims"] = [4, 4, 2]
    bad_node_acc = copy.deepcopy(node)
    bad_node_acc["accelerator"] = "H100-PCIe"
    return [
        ("missing-source", {LINK_FILE: {"links": {"L": no_source}}}, LINK_FILE, "links.L.source",
         "required field is missing"),
        ("blank-source", {LINK_FILE: {"links": {"L": _link(source="  ")}}}, LINK_FILE,
         "links.L.source", "must name where"),
        ("missing-as_of", {LINK_FILE: {"links": {"L": no_as_of}}}, LINK_FILE, "links.L.as_of",
         "required field is missing"),
        ("bare-number-bandwidth", {LINK_FILE: {"links": {"L": _link(bandwidth=400)}}}, LINK_FILE,
         "links.L.bandwidth", "bare number 400"),
        ("bytes-as-bandwidth", {LINK_FILE: {"links": {"L": _link(bandwidth="400 GB")}}},
         LINK_FILE, "links.L.bandwidth", "is a bytes"),
        ("negative-bandwidth", {LINK_FILE: {"links": {"L": _link(bandwidth="-400 Gb/s")}}},
         LINK_FILE, "links.L.bandwidth", "negative"),
        ("zero-bandwidth", {LINK_FILE: {"links": {"L": _link(bandwidth="0 Gb/s")}}}, LINK_FILE,
         "links.L.bandwidth", "greater than zero"),
        ("unknown-field", {LINK_FILE: {"links": {"L": _link(colour="blue")}}}, LINK_FILE,
         "links.L.colour", "unknown field 'colour'"),
        ("unknown-section", {"r.yaml": {"routers": {"R": _link()}}}, "r.yaml", "routers",
         "unknown catalog section"),
        ("estimate-not-a-field", {LINK_FILE: {"links": {"L": _link(estimate=["speed"])}}},
         LINK_FILE, "links.L.estimate", "'speed'"),
        ("bad-link-kind", {LINK_FILE: {"links": {"L": _link(kind="wifi")}}}, LINK_FILE,
         "links.L.kind", "'wifi'"),
        ("efficiency-above-1", {LINK_FILE: {"links": {"L": _link(protocol_efficiency=1.5)}}},
         LINK_FILE, "links.L.protocol_efficiency", "<= 1.0"),
        ("p2p-above-protocol", {LINK_FILE: {"links": {"L": _link(p2p_efficiency=0.99)}}},
         LINK_FILE, "links.L.p2p_efficiency", "exceeds protocol_efficiency 0.97"),
        ("attention-above-1", {ACC_FILE: {"accelerators": {"X": _h100(
            attention_efficiency={"fwd": 1.2, "bwd": 0.5})}}},
         ACC_FILE, "accelerators.X.attention_efficiency.fwd", "<= 1.0"),
        ("attention-unknown-pass", {ACC_FILE: {"accelerators": {"X": _h100(
            attention_efficiency={"fwd": 0.5, "bwd": 0.5, "decode": 0.3})}}},
         ACC_FILE, "accelerators.X.attention_efficiency.decode", "unknown field"),
        ("idle-above-tdp", {ACC_FILE: {"accelerators": {"X": _h100(idle_power="800 W")}}},
         ACC_FILE, "accelerators.X.idle_power", "exceeds TDP"),
        ("unknown-scale-up-link",
         {ACC_FILE: {"accelerators": {"X": _h100(scale_up_link="nvlink9")}}}, ACC_FILE,
         "accelerators.X.scale_up_link", "unknown link 'nvlink9'"),
        ("scale-up-bandwidth-mismatch",
         {ACC_FILE: {"accelerators": {"X": _h100(scale_up_bandwidth="900 GB/s")}}}, ACC_FILE,
         "accelerators.X.scale_up_bandwidth", "does not equal"),
        ("unknown-precision",
         {ACC_FILE: {"accelerators": {"X": _h100(peak_flops={"bf16": "989 TFLOP/s",
                                                             "bf17": "1 TFLOP/s"})}}},
         ACC_FILE, "accelerators.X.peak_flops.bf17", "unknown precision"),
        ("efficiency-without-peak",
         {ACC_FILE: {"accelerators": {"X": _h100(matmul_efficiency={"fp4": 0.5})}}}, ACC_FILE,
         "accelerators.X.matmul_efficiency.fp4", "no peak_flops"),
        ("switch-unknown-link",
         {"s.yaml": {"switches": {"S": {"name": "s", "vendor": "v", "kind": "packet",
                                        "radix": 64, "port_speed": "400 Gb/s", "link": "eth-9",
                                        "latency": "1 us", "power": "1 kW", "price": "1 USD",
                                        "source": "t", "as_of": "2024-01"}}}},
         "s.yaml", "switches.S.link", "unknown link 'eth-9'"),
        ("node-unknown-accelerator", {"n.yaml": {"nodes": {"N": bad_node_acc}}}, "n.yaml",
         "nodes.N.accelerator", "unknown accelerator 'H100-PCIe'"),
        ("torus-dims-mismatch", {"n.yaml": {"nodes": {"N": torus}}}, "n.yaml",
         "nodes.N.scale_up.dims", "holds 32 chips"),
    ]


# Errors inside one entry are raised while its file is read (Catalog.read_dir, which
# load_catalog runs on the bundled directory, then on the user's); errors that refer to other
# entries are raised by Catalog.check once everything is read, so those go through
# load_catalog. (A failed load is not cached, and re-reading the bundled catalog costs ~0.2 s
# per case, hence read_dir for the first group.)
CROSS_REFERENCE = {"unknown-scale-up-link", "scale-up-bandwidth-mismatch", "switch-unknown-link",
                   "node-unknown-accelerator"}
BAD_CASES = _bad_cases()


@pytest.mark.parametrize(("case", "files", "bad_file", "field", "fragment"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_bad_user_catalog(tmp_path, case, files, bad_file, field, fragment):
    d = _write_catalog(tmp_path, files)
    with pytest.raises(ConfigError) as ei:
        if case in CROSS_REFERENCE:
            load_catalog(d)
        else:
            Catalog().read_dir(d)
    err = ei.value
    path = str(d / bad_file)
    assert err.file == path
    assert err.field == field
    assert str(err).startswith(f"{path}: {field}: ")
    assert fragment in str(err)


def test_bad_nic_link_names_its_field(tmp_path):
    node = _bundled_yaml("nodes")["DGX-H100"]
    node["nic"]["link"] = "ib-nope"
    d = _write_catalog(tmp_path, {"n.yaml": {"nodes": {"N": node}}})
    with pytest.raises(ConfigError) as ei:
        load_catalog(d)
    assert ei.value.field == "nodes.N.nic.link"


def test_load_catalog_reports_entry_errors_like_read_dir(tmp_path):
    d = _write_catalog(tmp_path, {LINK_FILE: {"links": {"L": _link(bandwidth=400)}}})
    with pytest.raises(ConfigError) as ei:
        load_catalog(d)
    with pytest.raises(ConfigError) as ej:
        Catalog().read_dir(d)
    assert str(ei.value) == str(ej.value)
    assert str(ei.value).startswith(f"{d / LINK_FILE}: links.L.bandwidth: bare number 400")


def test_bad_host_link_names_its_field(tmp_path):
    node = _bundled_yaml("nodes")["DGX-H100"]
    node["nic"]["host_link"] = "pcie9"
    d = _write_catalog(tmp_path, {"n.yaml": {"nodes": {"N": node}}})
    with pytest.raises(ConfigError) as ei:
        load_catalog(d)
    assert ei.value.field == "nodes.N.nic.host_link"
    assert "unknown link 'pcie9'" in str(ei.value)


def test_blank_as_of_is_rejected(tmp_path):
    d = _write_catalog(tmp_path, {LINK_FILE: {"links": {"L": _link(as_of="")}}})
    with pytest.raises(ConfigError) as ei:
        Catalog().read_dir(d)
    assert ei.value.field == "links.L.as_of"


@pytest.mark.parametrize("csv_text, fragment", [
    (None, "cannot read GEMM shape table"),
    ("m,n,k,tflops\n256,256,256,1\n512,512,512,2\n", "no positive throughput for m=256 n=256 k=512"),
    ("m,n,k,tflops\n" + "".join(f"{a},{b},{c},1\n" for a in (3, 6) for b in (3, 6)
                                for c in (3, 6)), "powers of two"),
    ("m,n,k,speed\n256,256,256,1\n", "expected columns m, n, k, tflops"),
])
def test_bad_gemm_shape_table_names_entry_and_file(tmp_path, csv_text, fragment):
    d = _write_catalog(tmp_path, {"acc.yaml": {"accelerators": {
        "X": _h100(gemm_shapes="mine.csv")}}})
    if csv_text is not None:
        (d / "mine.csv").write_text(csv_text)
    with pytest.raises(ConfigError) as ei:
        Catalog().read_dir(d)
    msg = str(ei.value)
    assert ei.value.field == "accelerators.X.gemm_shapes"
    assert str(d / "mine.csv") in msg and fragment in msg and "\n" not in msg
