"""Fabric-layer speed: build time and peak memory of large proposals, and routing time.

Run: python experiments/benchmarks/fabric.py [--quick]

Prints one table. Each build runs in a fresh subprocess so that its peak resident memory
(ru_maxrss) is its own. Figures are wall-clock seconds on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CASES = [
    ("16,384 H100, Llama-3-shape 3-tier RoCE (bundled)",
     "f = load_topology('topologies/llama3-16k-roce.yaml')"),
    ("65,536 H100, 3-tier fat-tree 400G RoCE (1:1:1)",
     # k = 128 (TH5, 64 x 800G split into 128 x 400G): 64 down / 64 up per leaf,
     # 64 leaves and 64 spines per pod, 16 pods, 64 core planes of 8 cores
     "f = fat_tree(node='DGX-H100', servers=8192, link='eth-400g', servers_per_leaf=8, "
     "leaves_per_pod=64, tiers=[Tier('TH5', 1, None, 'rack'), Tier('TH5', 1, None, 'row'), "
     "Tier('TH5', 1, None, 'hall')])"),
    ("32,768 H100, rail-optimized 3-tier NDR IB",
     "f = rail_optimized(node='DGX-H100', servers=4096, leaf='QM9700', spine='QM9700', "
     "core='QM9700', link='ib-ndr', servers_per_unit=32, units_per_pod=4)"),
]

SNIPPET = textwrap.dedent("""
    import json, resource, time
    t0 = time.perf_counter()
    from sim.fabric import load_topology, fat_tree, rail_optimized, Tier
    t_imp = time.perf_counter()
    {build}
    t_build = time.perf_counter()
    c = f.compile()
    t_comp = time.perf_counter()
    accs = f.accelerators
    n = len(accs)
    pairs = [(accs[i], accs[(i + 1) % n]) for i in range(min(n, 16384))]
    t_r0 = time.perf_counter()
    hops = 0
    for a, b in pairs:
        hops += f.route(a, b, policy='ecmp').hops
    t_r1 = time.perf_counter()
    sprays = [(accs[i], accs[(i + n // 2 + 3) % n]) for i in range(0, n, max(1, n // 1024))]
    for a, b in sprays:
        f.route(a, b, policy='spray')
    t_r2 = time.perf_counter()
    print(json.dumps(dict(
        accelerators=n, nodes=f.graph.number_of_nodes(), links=f.graph.number_of_edges(),
        build_s=t_build - t_imp, compile_s=t_comp - t_build,
        route_ring_s=t_r1 - t_r0, ring_routes=len(pairs), mean_hops=hops / len(pairs),
        route_spray_s=t_r2 - t_r1, spray_routes=len(sprays),
        peak_rss_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="only the bundled 16K proposal")
    args = ap.parse_args()
    cases = CASES[:1] if args.quick else CASES
    hdr = (f"{'case':<52} {'accel':>7} {'nodes':>8} {'links':>9} {'build s':>8} "
           f"{'compile s':>9} {'peak MB':>8} {'ring routes':>11} {'route s':>8} "
           f"{'spray routes':>12} {'spray s':>8}")
    print(hdr)
    print("-" * len(hdr))
    for name, build in cases:
        out = subprocess.run([sys.executable, "-c", SNIPPET.format(build=build)],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{name:<52} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:<52} {r['accelerators']:>7,} {r['nodes']:>8,} {r['links']:>9,} "
              f"{r['build_s']:>8.2f} {r['compile_s']:>9.2f} {r['peak_rss_MB']:>8.0f} "
              f"{r['ring_routes']:>11,} {r['route_ring_s']:>8.2f} {r['spray_routes']:>12,} "
              f"{r['route_spray_s']:>8.2f}")


if __name__ == "__main__":
    main()
