"""The ``fabsim`` command line.

Subcommands grow with the project; each prints a table (or JSON with ``--json``) and exits
0, or prints one line ``fabsim: error: <file>: <field>: <what>`` and exits 2 for a user's
mistake (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from .engine import DEFAULT_NETWORK, NETWORKS
from .errors import ConfigError, SimError

__all__ = ["main"]


def _topo_show(args: argparse.Namespace) -> int:
    from .fabric import format_summary, load_topology, summarize

    outs = []
    for i, path in enumerate(args.topology):
        f = load_topology(path, args.set)
        s = summarize(f)
        s["file"] = path
        if args.json:
            outs.append(s)
        else:
            if i:
                print()
            print(format_summary(s))
    if args.json:
        print(json.dumps(outs[0] if len(outs) == 1 else outs, indent=2, sort_keys=False))
    return 0


def _topo_draw(args: argparse.Namespace) -> int:
    from .fabric import load_topology
    from .fabric.draw import draw

    f = load_topology(args.topology, args.set)
    out = draw(f, args.output)
    print(f"wrote {out}")
    return 0


_SIZE_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
               "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TIB": 2**40}


def _size(text: str) -> int:
    """'1KiB' -> 1024 (nccl-tests style: K, M, G are binary)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        from .errors import ConfigError

        raise ConfigError(f"cannot read size {text!r} (e.g. 8, 1KiB, 64MiB, 16GiB)",
                          field="--sizes")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


def _sizes(spec: str) -> list[int]:
    """'1KiB:16GiB' (doubling), '1KiB:16GiB:4' (x4 steps) or '8,1MiB,1GiB'."""
    from .errors import ConfigError

    if "," in spec or ":" not in spec:
        out = [_size(x) for x in spec.split(",") if x.strip()]
    else:
        parts = spec.split(":")
        lo, hi = _size(parts[0]), _size(parts[1])
        factor = int(parts[2]) if len(parts) > 2 else 2
        if lo < 1 or hi < lo or factor < 2:
            raise ConfigError(f"size range {spec!r} must go up from >= 1 B by a factor >= 2",
                              field="--sizes")
        out = []
        x = lo
        while x <= hi:
            out.append(x)
            x *= factor
    if not out:
        raise ConfigError(f"no sizes in {spec!r}", field="--sizes")
    return out


def _ranks(spec: str) -> list[int]:
    from .errors import ConfigError

    try:
        out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected rank counts like 8,64,1024, got {spec!r}",
                          field="--ranks") from None
    if not out or any(r < 2 for r in out):
        raise ConfigError(f"rank counts must be at least 2, got {spec!r}", field="--ranks")
    return out


def _fmt_size(n: int) -> str:
    for u, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= f and n % f == 0:
            return f"{n // f}{u}"
    return f"{n}B"


def _collective_vs_measured(args: argparse.Namespace, f) -> int:
    """`fabsim collective --measured nccl-tests.txt`: the model next to the user's run."""
    import statistics

    from .collectives import collective_time
    from .errors import InfeasibleError
    from .validation.nccl_tests import read_nccl_tests

    run = read_nccl_tests(args.measured)
    op = run.op or args.op
    p = _ranks(args.ranks)[0] if args.ranks else run.ranks
    if p is None:
        raise InfeasibleError(f"{args.measured}: the output lists no '#  Rank' lines; give "
                              "--ranks")
    if p > f.n_accelerators:
        raise InfeasibleError(f"{args.measured}: {p} ranks, but {args.topology} has only "
                              f"{f.n_accelerators} accelerators")
    rows = []
    for m in run.rows.itertuples():
        r = collective_time(f, op, p, m.size_bytes, args.algorithm, protocol=args.protocol,
                            policy=args.routing)
        pred_us = r.time_s * 1e6
        rows.append({"size_bytes": int(m.size_bytes), "measured_us": m.time_us,
                     "predicted_us": pred_us, "measured_busbw_GBps": m.busbw_GBps,
                     "predicted_busbw_GBps": r.busbw_Bps / 1e9,
                     "time_error_pct": (pred_us / m.time_us - 1) * 100 if m.time_us else None,
                     "algorithm": f"{r.algorithm}/{r.protocol}"})
    if args.json:
        print(json.dumps({"op": op, "ranks": p, "rows": rows}, indent=1))
        return 0
    print(f"# {args.measured}: {op}, {p} ranks, against {f.name} "
          f"(routing {args.routing or f.routing})")
    print(f"{'size':>10} {'meas(us)':>11} {'pred(us)':>11} {'err(%)':>7} {'meas busbw':>11} "
          f"{'pred busbw':>11}  algorithm/protocol")
    for r in rows:
        print(f"{_fmt_size(r['size_bytes']):>10} {r['measured_us']:>11.2f} "
              f"{r['predicted_us']:>11.2f} {r['time_error_pct']:>+7.1f} "
              f"{r['measured_busbw_GBps']:>11.2f} {r['predicted_busbw_GBps']:>11.2f}  "
              f"{r['algorithm']}")
    big = [abs(r["time_error_pct"]) for r in rows if r["size_bytes"] >= 2**20]
    small = [abs(r["time_error_pct"]) for r in rows if r["size_bytes"] < 2**20]
    for label, e in (("sizes >= 1 MiB", big), ("sizes < 1 MiB", small)):
        if e:
            print(f"{label}: median |time error| {statistics.median(e):.1f}% "
                  f"over {len(e)} sizes")
    return 0


def _collective(args: argparse.Namespace) -> int:
    from .collectives import collective_time
    from .errors import InfeasibleError
    from .fabric import load_topology

    f = load_topology(args.topology, args.set)
    if args.measured:
        return _collective_vs_measured(args, f)
    rows = []
    for p in _ranks(args.ranks or "8"):
        if p > f.n_accelerators:
            raise InfeasibleError(f"--ranks {p}: {args.topology} has only "
                                  f"{f.n_accelerators} accelerators")
        for n in _sizes(args.sizes):
            r = collective_time(f, args.op, p, n, args.algorithm, protocol=args.protocol,
                                policy=args.routing)
            rows.append(r.as_row())
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        hdr = (f"# {f.name}\n# op {args.op}, routing {args.routing or f.routing}, "
               f"algorithm {args.algorithm}\n"
               f"{'ranks':>6} {'size':>10} {'bytes':>13} {'time(us)':>11} {'algbw(GB/s)':>12} "
               f"{'busbw(GB/s)':>12}  algorithm/protocol")
        print(hdr)
        for r in rows:
            print(f"{r['ranks']:>6} {_fmt_size(int(r['bytes'])):>10} {int(r['bytes']):>13} "
                  f"{r['time_s'] * 1e6:>11.2f} {r['algbw_GBps']:>12.2f} {r['busbw_GBps']:>12.2f}"
                  f"  {r['algorithm']}/{r['protocol']}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        for p in sorted({r["ranks"] for r in rows}):
            rs = [r for r in rows if r["ranks"] == p]
            ax.plot([r["bytes"] for r in rs], [r["busbw_GBps"] for r in rs], marker="o",
                    ms=3, label=f"{p} ranks")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("busbw (GB/s)")
        ax.set_title(f"{args.op} on {f.name}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .fabric import load_topology
    from .units import format_si
    from .workload import load_workload, simulate_training

    f = load_topology(args.topology, args.set)
    w = load_workload(args.workload, args.wset, catalog=f.catalog)
    r = simulate_training(f, w, network=args.network)
    if args.json:
        print(json.dumps(r.as_dict(), indent=1, default=float))
        return 0
    mem = r.memory
    print(f"# {w.name}: {w.model.name} on {f.name}")
    print(f"# {w.gpus} GPUs = tp {w.tp} x pp {w.pp} x dp {w.dp} x cp {w.cp} (ep {w.ep}, "
          f"{w.vpp} virtual stages, ZeRO-{w.zero}, recompute {w.recompute}, "
          f"{w.micro_batches} micro-batches of {w.micro_batch}), network model {r.network}")
    rows = [("step time", format_si(r.step_time_s, "time")),
            ("tokens/s", f"{r.tokens_per_s:,.0f}"),
            ("MFU / HFU", f"{r.mfu * 100:.1f}% / {r.hfu * 100:.1f}%"),
            ("memory per GPU", f"{mem['total'] / 2**30:.1f} GiB of "
                               f"{r.hbm_capacity_bytes / 2**30:.0f} GiB (weights "
                               f"{mem['weights'] / 2**30:.1f}, grads "
                               f"{mem['gradients'] / 2**30:.1f}, optimizer "
                               f"{mem['optimizer'] / 2**30:.1f}, activations "
                               f"{mem['activations'] / 2**30:.1f})")]
    rows.append(("breakdown", f"pipeline stage {r.breakdown['critical_stage']} (busiest)"))
    for k, v in r.breakdown.items():
        if k == "critical_stage":
            continue
        rows.append((f"  {k.replace('_', ' ')}", f"{format_si(v, 'time')} "
                                                  f"({v / r.step_time_s * 100:.1f}%)"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("\nbusiest links:")
    print(r.links.head(5).to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .engine import warmup_for
    from .fabric import load_topology
    from .units import parse
    from .workload.serving import load_service, plot_service, simulate_service

    f = load_topology(args.topology, args.set)
    s = load_service(args.service, args.wset, catalog=f.catalog)
    dur = parse(args.duration, "time", field="--duration")
    r = simulate_service(f, s, dur, warmup_s=warmup_for(dur), network=args.network)
    if args.plot:
        plot_service(r, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(r.summary, indent=1, default=float))
        return 0
    m = r.summary
    print(f"# {s.name}: {s.model.name}, {s.replicas} replicas x tp {s.tp} on {f.name}")
    print(f"# {m['requests']:,} requests over {m['duration_s']:.1f} s: "
          f"{m['requests_finished']:,} finished, {m['requests_rejected']:,} rejected, "
          f"{m['requests_unfinished']:,} unfinished; KV cache "
          f"{m['kv_capacity_tokens']:,} tokens per replica; {m['preemptions']} preemptions")
    for k, v in m.items():
        if k.startswith("requests_rejected_"):
            print(f"# rejected at admission, {k[len('requests_rejected_'):]}: {v:,} "
                  "(percentiles over finished requests; SLO attainment counts them as "
                  "misses)")
    print(f"# latencies of requests after a {m['warmup_s']:g} s warm-up; network model "
          f"{m['network']}")
    print(f"{'':<10} {'p50':>10} {'p90':>10} {'p99':>10} {'mean':>10}")
    for k in ("ttft", "tpot", "e2e"):
        print(f"{k.upper():<10} " + " ".join(f"{m[f'{k}_{q}_s'] * 1e3:>8.1f}ms"
                                             for q in ("p50", "p90", "p99", "mean")))
    w0, w1 = m["throughput_window_s"]
    print(f"throughput {m['throughput_tokens_per_s']:,.0f} output tokens/s, "
          f"{m['requests_per_s']:.2f} requests/s (from {w0:.0f} s to {w1:.0f} s)")
    if "slo_attainment" in m:
        print(f"SLO attainment {m['slo_attainment'] * 100:.1f}%")
    print(f"busy {m['busy_fraction'] * 100:.1f}% of the time, HBM bandwidth "
          f"{m['hbm_utilization'] * 100:.1f}%")
    return 0


def _goodput(args: argparse.Namespace) -> int:
    from .fabric import load_topology
    from .units import parse
    from .workload import load_workload
    from .workload.goodput import best_interval, load_failures, simulate_goodput
    from .workload.goodput.text import aggregate, format_goodput
    from .workload.training import simulate_training

    f = load_topology(args.topology, args.set)
    w = load_workload(args.workload, args.wset, catalog=f.catalog)
    m = load_failures(args.failures)
    dur = parse(args.duration, "time", field="--duration")
    iv = None if args.checkpoint_interval in (None, "auto") else \
        parse(args.checkpoint_interval, "time", field="--checkpoint-interval")
    if args.seeds < 1:
        raise ConfigError(f"must be at least 1, got {args.seeds}", field="--seeds")
    seeds = list(range(args.seeds))
    step = simulate_training(f, w, network=args.network).step_time_s  # once per layout
    res = [simulate_goodput(f, w, m, dur, seed=s, step_s=step, interval_s=iv) for s in seeds]
    scan = best_interval(f, w, m, dur, seeds, step) if args.scan else None
    agg = aggregate(res)
    if args.plot:
        from .workload.goodput.plot import plot_goodput

        plot_goodput(res[0], args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        if scan is not None:
            agg["scan"] = {k: (v.to_dict(orient="records") if hasattr(v, "to_dict") else v)
                           for k, v in scan.items()}
        print(json.dumps(agg, indent=1, default=float))
        return 0
    print(format_goodput(f"{w.name} on {f.name}", agg, res, scan))
    return 0


def _run_mix(args: argparse.Namespace) -> int:
    from .workload.mix import run_mix

    df = run_mix(args.mix)
    if args.json:
        print(df.to_json(orient="records", indent=1))
        return 0
    print(f"# {df['mix'].iloc[0]}: each job alone vs all together (flow network model)")
    print(df[["job", "kind", "metric", "alone", "in_mix", "change_pct"]].to_string(
        index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def _print_side_by_side(names: list[str], rows: list[list[str]]) -> None:
    """The proposals as P1..Pn, then the table: metric left, one right-aligned column
    per proposal."""
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(r[i]) for r in rows) for i in range(1, len(rows[0]))]
    for i, n in enumerate(names):
        print(f"P{i + 1}: {n}")
    for r in rows:
        print(f"{r[0]:<{w0}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(r[1:], ws, strict=True)))


def _compare(args: argparse.Namespace) -> int:
    from .cost import load_assumptions
    from .report import compare, table, write_report
    from .units import parse

    a = load_assumptions(args.assumptions)
    dur = parse(args.duration, "time", field="--duration")
    df, extras = compare(args.topology, args.workload, args.service, a, duration_s=dur,
                         network=args.network)
    if args.json:
        print(df.to_json(orient="records", indent=1))
        return 0
    _print_side_by_side(list(df["proposal"]), table(df))
    for i, r in df.iterrows():
        for k in ("training_error", "service_error"):
            if k in df.columns and isinstance(r.get(k), str):
                print(f"P{i + 1} {k.split('_')[0]}: {r[k]}")
    if args.output:
        h, m = write_report(args.output, df, extras, assumptions=a,
                            title="Design review: " + ", ".join(str(x) for x in args.topology))
        print(f"\nreport: {h} and {m}")
    return 0


def _validation_dirs(args: argparse.Namespace, need: tuple[str, ...]) -> dict:
    """The folders ``fabsim validate`` reads, by flag name ("shared", "data",
    "topologies"): each flag's value or its default. The defaults come from the repository
    checkout: the first directory holding both experiments/validation and topologies,
    walking up from the current directory (else the one holding this package, if it is a
    checkout); --shared defaults to $FABSIM_VALIDATION_DIR or ../shared/validation beside
    the checkout. A folder that does not exist is a ConfigError naming its flag."""
    import os
    from pathlib import Path

    from .errors import ConfigError

    def is_checkout(d: Path) -> bool:
        return (d / "experiments" / "validation").is_dir() and (d / "topologies").is_dir()

    here = Path.cwd().resolve()
    installed = Path(__file__).resolve().parents[1]
    root = next((d for d in (here, *here.parents) if is_checkout(d)),
                installed if is_checkout(installed) else None)
    env = os.environ.get("FABSIM_VALIDATION_DIR")
    defaults = {"data": ("experiments/validation", None),
                "topologies": ("topologies", None),
                "shared": ("../shared/validation", Path(env) if env else None)}
    out = {}
    for name in need:
        given = getattr(args, name)
        rel, fixed = defaults[name]
        if given is not None:
            d, how = Path(given), ""
        elif fixed is not None:
            d, how = fixed, " (from $FABSIM_VALIDATION_DIR)"
        elif root is None:
            raise ConfigError(f"no repository checkout (a directory holding "
                              f"experiments/validation and topologies) at or above {here} "
                              f"to find {rel} in; pass --{name} DIR", field=f"--{name}")
        else:
            d, how = (root / rel).resolve(), ""
        if not d.is_dir():
            raise ConfigError(f"folder not found: {d}{how}", field=f"--{name}")
        out[name] = d
    return out


def _plan(args: argparse.Namespace) -> int:
    from .fabric import load_topology
    from .workload.training import load_workload
    from .workload.training.plan import format_plan, search

    f = load_topology(args.topology, args.set)
    w = load_workload(args.workload, args.wset, catalog=f.catalog)
    res = search(f, w, objective=args.objective, top=args.top)
    if args.json:
        print(json.dumps({"counts": res.counts, "wall_time_s": res.wall_time_s,
                          "why": res.why, "layouts": json.loads(
                              res.table.head(args.top).to_json(orient="records"))},
                         indent=1, default=float))
        return 0
    print(format_plan(res, top=args.top))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .experiment import statuses, sweep

    df = sweep(args.study, out=args.output, workers=args.workers, backend=args.backend,
               address=args.address, progress=not args.json, quick=args.quick)
    if args.json:
        print(df.to_json(orient="records", indent=1))
        return 0
    counts = statuses(df)
    print(f"# {len(df)} rows: " + ", ".join(f"{n} {k}" for k, n in counts.items()) +
          (f"; {args.output}/results.parquet" if args.output else ""))
    with __import__("pandas").option_context("display.width", 200, "display.max_rows", 60):
        print(df.drop(columns=[c for c in ("spec_hash", "version") if c in df]).to_string(
            index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def _review(args: argparse.Namespace) -> int:
    import dataclasses

    from .review import load_review, run_review
    from .review.report import comparison_rows, to_json, write_review

    rv = load_review(args.review)
    if args.seeds is not None:
        rv = dataclasses.replace(rv, seeds=args.seeds)
    if args.network is not None:
        rv = dataclasses.replace(rv, network=args.network)
    res = run_review(rv, progress=lambda i, n, name: print(
        f"[{i}/{n}] {name}", file=sys.stderr), workers=args.workers)
    paths = write_review(args.output, res) if args.output else None
    if args.json:
        print(json.dumps(to_json(res), indent=1, default=float))
        return 0
    print(f"# {rv.name}: {len(res.runs)} proposals, network model {rv.network}, "
          f"{rv.seeds} seed(s); {res.meta['wall_s']:.0f} s")
    print("\nVerdict:")
    for v in res.verdict:
        print(f"  {v['text']}")
    for i, b in enumerate(res.bottlenecks):
        print(f"  P{i + 1} {res.runs[i].name}: {b}")
    for t in res.ties + res.flips:
        print(f"  {t}")
    print()
    _print_side_by_side([r.name for r in res.runs], comparison_rows(res.table))
    if paths:
        print(f"\nreport: {paths['html']}, {paths['md']}, {paths['parquet']}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    need = {"collectives": ("shared", "data"), "training": ("shared", "data", "topologies"),
            "inference": ("shared", "data")}[args.what]
    dirs = _validation_dirs(args, need)
    show = {"inference": _validate_inference, "training": _validate_training,
            "collectives": _validate_collectives}[args.what]
    return show(args, dirs)


def _validate_inference(args: argparse.Namespace, dirs: dict) -> int:
    import pandas as pd

    from .validation import mlperf_cases, trtllm_cases, trtllm_ifb_cases

    static = trtllm_cases(dirs["shared"], dirs["data"])
    ifb = trtllm_ifb_cases(dirs["data"])
    mlperf = mlperf_cases(dirs["shared"], dirs["data"])
    if args.json:
        print(pd.concat([static, ifb, mlperf]).to_json(orient="records", indent=1))
        return 0
    cols = ["case", "measured", "predicted", "error_pct", "setting"]
    fmt = {"float_format": lambda x: f"{x:.1f}", "index": False}
    with pd.option_context("display.width", 250, "display.max_colwidth", 120,
                           "display.max_rows", 200):
        own = static[static["source"].str.startswith("inference.tsv")]
        print("TensorRT-LLM static batching, shared/validation/inference.tsv "
              "(output tokens/s per GPU):")
        print(own[cols].to_string(**fmt))
        err = own["error_pct"].abs()
        print(f"{len(own)} rows: median |error| {err.median():.1f}%, max {err.max():.1f}%")
        more = static[~static["source"].str.startswith("inference.tsv")]
        print("\nFurther published TensorRT-LLM rows (experiments/validation/"
              "trtllm_perf.tsv):")
        print(more[cols].to_string(**fmt))
        by = more.assign(release=more["case"].str.split("-").str[1],
                         abs_err=more["error_pct"].abs())
        print(by.groupby("release")["abs_err"].agg(["count", "median", "max"])
              .round(1).to_string())
        print("\nTensorRT-LLM in-flight batching, all requests at once (experiments/"
              "validation/trtllm_ifb.tsv):")
        print(ifb[cols].to_string(**fmt))
        ok = ifb[ifb["status"] == "ok"].assign(abs_err=lambda d: d["error_pct"].abs(),
                                               signed=lambda d: d["error_pct"])
        print(ok.groupby("release")[["abs_err", "signed"]]
              .agg({"abs_err": ["count", "median", "max"], "signed": ["median"]})
              .round(1).to_string())
        for _, r in ifb[ifb["status"] != "ok"].iterrows():
            print(f"  {r['case']}: {r['status']}")
        print("\nMLPerf Inference v4.1 llama2-70b, DGX H100 and (out of sample) H200 x8:")
        print(mlperf[["case", "status", "measured", "predicted", "error_pct",
                      "setting"]].to_string(**fmt))
    return 0


def _validate_training(args: argparse.Namespace, dirs: dict) -> int:
    import pandas as pd

    from .validation import (
        nemo_training_cases,
        published_training_cases,
        split_summary,
        training_cases,
    )

    df = training_cases(dirs["shared"])
    nemo = nemo_training_cases(dirs["data"])
    pub = published_training_cases(dirs["data"], dirs["topologies"])
    if args.json:
        print(pd.concat([df.assign(source="training_cases.tsv"),
                         nemo.assign(source="nemo_training.tsv"),
                         pub.assign(source="published_training.tsv")])
              .to_json(orient="records", indent=1))
        return 0
    ok = df[df["status"] == "ok"]
    fmt = {"index": False, "float_format": lambda x: f"{x:.1f}"}
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(ok[["case", "gpus", "metric", "measured", "predicted", "error_pct"]]
              .to_string(**fmt))
        skipped = df[df["status"] != "ok"]
        for _, r in skipped.iterrows():
            print(f"  {r['case']}: {r['status']}")
    err = ok["error_pct"].abs()
    print(f"\n{len(ok)} cases: median |error| {err.median():.1f}%, max {err.max():.1f}%")
    n_ok = nemo[nemo["status"] == "ok"]
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print("\nNeMo / Megatron-Bridge pre-training on DGX-H100, tokens/s per GPU "
              "(experiments/validation/nemo_training.tsv; not used to set any constant):")
        print(n_ok[["case", "gpus", "layout", "measured", "predicted", "error_pct"]]
              .to_string(**fmt))
        other = nemo[nemo["status"] != "ok"]
        for status, grp in other.groupby("status", sort=False):
            print(f"  {len(grp)} rows {status}")
    e = n_ok["error_pct"]
    print(f"{len(n_ok)} rows: median |error| {e.abs().median():.1f}%, median error "
          f"{e.median():+.1f}%, max |error| {e.abs().max():.1f}%")
    p_ok = pub[pub["status"] == "ok"]
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print("\nOther published pre-training runs: DGX Cloud recipes, Llama 3, Nemotron-4 15B, "
              "MegaScale's Megatron-LM baseline (experiments/validation/"
              "published_training.tsv; not used to set any constant):")
        print(p_ok[["case", "gpus", "layout", "metric", "measured", "predicted",
                    "error_pct"]].to_string(**fmt))
        for _, r in pub[pub["status"] != "ok"].iterrows():
            print(f"  {r['case']}: {r['status']}")
    e = p_ok["error_pct"]
    print(f"{len(p_ok)} rows: median |error| {e.abs().median():.1f}%, median error "
          f"{e.median():+.1f}%, max |error| {e.abs().max():.1f}%")
    print("\nBy sample and hardware family (in-sample: training_cases.tsv, the rows the "
          "constants were derived from; out-of-sample: the NeMo and published tables):")
    print(split_summary(df, pd.concat([nemo, pub])).to_string(index=False))
    return 0


def _validate_collectives(args: argparse.Namespace, dirs: dict) -> int:
    import pandas as pd

    from .validation import collective_cases, multinode_cases, summarize_errors

    df = collective_cases(dirs["shared"])
    multi = multinode_cases(dirs["data"])
    if args.json:
        print(pd.concat([df.assign(source="shared"), multi.assign(source="nccl_multinode.tsv")])
              .to_json(orient="records", indent=1))
        return 0
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        show = df.assign(size=[_fmt_size(int(b)) for b in df["bytes"]])
        print(show[["case", "size", "metric", "measured", "predicted", "error_pct",
                    "algorithm"]].to_string(index=False, float_format=lambda x: f"{x:.1f}"))
        print()
        print(summarize_errors(df).to_string())
    _print_multinode(multi)
    return 0


def _print_multinode(multi) -> None:
    """Per sweep of nccl_multinode.tsv: median error above (busbw) and below (time) 1 MiB."""
    import pandas as pd

    ok = multi[multi["status"] == "ok"]
    print("\nMulti-node NCCL scans (experiments/validation/nccl_multinode.tsv; no constant set "
          "from them): error % of busbw at >= 1 MiB, of time below")
    t = ok.groupby(["case", "metric"]).agg(gpus=("nodes", "first"), rows=("error_pct", "size"),
                                           median=("error_pct", "median"),
                                           min=("error_pct", "min"), max=("error_pct", "max"))
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(t.rename(columns={"gpus": "nodes"}).round(1).to_string())
    for c, st in multi[multi["status"] != "ok"].groupby("case")["status"].first().items():
        print(f"  {c}: {st}")
    for metric, label in (("busbw_GBps", ">= 1 MiB (busbw)"), ("time_us", "< 1 MiB (time)")):
        e = ok[ok["metric"] == metric]["error_pct"]
        if len(e):
            print(f"{label}: {len(e)} rows, median |error| {e.abs().median():.1f}%, median "
                  f"error {e.median():+.1f}%")


def _add_topo(sub) -> None:
    """The `fabsim topo` sub-command."""
    topo = sub.add_parser("topo", help="inspect topology proposals")
    tsub = topo.add_subparsers(dest="topo_command", required=True)
    show = tsub.add_parser("show", help="summarize one or more proposals")
    show.add_argument("topology", nargs="+", help="topologies/<proposal>.yaml")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.add_argument("--set", action="append", metavar="PATH=VALUE",
                      help="override a field, e.g. params.servers=64 (repeatable)")
    show.set_defaults(func=_topo_show)
    dr = tsub.add_parser("draw", help="draw a proposal with repeated units collapsed")
    dr.add_argument("topology")
    dr.add_argument("-o", "--output", default="fabric.png", help="PNG/SVG/PDF path")
    dr.add_argument("--set", action="append", metavar="PATH=VALUE")
    dr.set_defaults(func=_topo_draw)


def _add_collective(sub) -> None:
    """The `fabsim collective` sub-command."""
    col = sub.add_parser("collective", help="collective time, nccl-tests style")
    col.add_argument("--topology", required=True, help="topologies/<proposal>.yaml")
    col.add_argument("--op", default="all_reduce",
                     choices=["all_reduce", "reduce_scatter", "all_gather", "all_to_all",
                              "broadcast", "reduce", "send_recv"])
    col.add_argument("--ranks", default=None, help="rank counts, e.g. 8,64,1024 (default 8)")
    col.add_argument("--sizes", default="8:8GiB",
                     help="sizes: LO:HI[:FACTOR] or a list, e.g. 1KiB:16GiB or 8,1MiB")
    col.add_argument("--algorithm", default="auto",
                     choices=["auto", "ring", "tree", "halving_doubling", "direct",
                              "hierarchical", "torus", "nvls", "sharp"])
    col.add_argument("--protocol", default="auto", choices=["auto", "LL", "LL128", "Simple"])
    col.add_argument("--routing", default=None, choices=["ecmp", "spray", "adaptive"],
                     help="scale-out routing (default: the proposal's)")
    col.add_argument("--json", action="store_true", help="print rows as JSON")
    col.add_argument("--plot", metavar="PNG", help="draw busbw vs size")
    col.add_argument("--set", action="append", metavar="PATH=VALUE")
    col.add_argument("--measured", metavar="NCCL_TESTS_OUTPUT",
                     help="an nccl-tests output file: predict its sizes, op and rank count "
                          "and print predicted vs measured")
    col.set_defaults(func=_collective)


def _add_train(sub) -> None:
    """The `fabsim train` sub-command."""
    tr = sub.add_parser("train", help="simulate one training step")
    tr.add_argument("--topology", required=True)
    tr.add_argument("--workload", required=True)
    tr.add_argument("--network", default=DEFAULT_NETWORK, choices=NETWORKS,
                    help=f"network model (default {DEFAULT_NETWORK})")
    tr.add_argument("--json", action="store_true")
    tr.add_argument("--set", action="append", metavar="PATH=VALUE",
                    help="override a topology field")
    tr.add_argument("--wset", action="append", metavar="PATH=VALUE",
                    help="override a workload field, e.g. parallelism.tp=4")
    tr.set_defaults(func=_train)


def _add_serve(sub) -> None:
    """The `fabsim serve` sub-command."""
    sv = sub.add_parser("serve", help="simulate an inference service (continuous batching)")
    sv.add_argument("--topology", required=True)
    sv.add_argument("--service", required=True)
    sv.add_argument("--duration", default="60s", help="arrival window, e.g. 600s")
    sv.add_argument("--network", default=DEFAULT_NETWORK, choices=NETWORKS,
                    help="network model of a disaggregated service's KV transfers "
                    f"(default {DEFAULT_NETWORK})")
    sv.add_argument("--json", action="store_true")
    sv.add_argument("--set", action="append", metavar="PATH=VALUE")
    sv.add_argument("--wset", action="append", metavar="PATH=VALUE",
                    help="override a service field, e.g. replicas=8")
    sv.add_argument("--plot", metavar="PNG",
                    help="draw the latency CDFs and throughput over time")
    sv.set_defaults(func=_serve)


def _add_run(sub) -> None:
    """The `fabsim run` sub-command."""
    mx = sub.add_parser("run", help="run a mix of training jobs and services on one fabric")
    mx.add_argument("mix", help="mix YAML (topology, duration, jobs)")
    mx.add_argument("--json", action="store_true")
    mx.set_defaults(func=_run_mix)


def _add_compare(sub) -> None:
    """The `fabsim compare` sub-command."""
    cp = sub.add_parser("compare", help="design review: cost, power and performance of "
                                        "proposals side by side")
    cp.add_argument("topology", nargs="+", help="topologies/<proposal>.yaml (first = baseline)")
    cp.add_argument("--workload", help="training workload YAML")
    cp.add_argument("--service", help="inference service YAML")
    cp.add_argument("--duration", default="30s", help="service arrival window (default 30s)")
    cp.add_argument("--assumptions", help="economics YAML overriding "
                                          "topologies/economics/default.yaml")
    cp.add_argument("--network", default=DEFAULT_NETWORK, choices=NETWORKS,
                    help=f"network model of training and serving (default {DEFAULT_NETWORK})")
    cp.add_argument("-o", "--output", help="report directory (index.html, report.md, PNGs)")
    cp.add_argument("--json", action="store_true", help="print the table as JSON records")
    cp.set_defaults(func=_compare)


def _add_plan(sub) -> None:
    """The `fabsim plan` sub-command."""
    pl = sub.add_parser("plan", help="search the parallel layout of a training workload "
                        "(fields set to auto) on a proposal")
    pl.add_argument("--topology", required=True)
    pl.add_argument("--workload", required=True, help="training YAML; `parallelism: auto` "
                    "or fields set to auto are searched")
    pl.add_argument("--top", type=int, default=10, help="layouts to print (default 10)")
    pl.add_argument("--objective", choices=["time", "cost"], default="time")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--set", action="append", metavar="PATH=VALUE",
                    help="override a topology field")
    pl.add_argument("--wset", action="append", metavar="PATH=VALUE",
                    help="override a workload field")
    pl.set_defaults(func=_plan)


def _add_review(sub) -> None:
    """The `fabsim review` sub-command."""
    rvw = sub.add_parser("review", help="design review of a fleet mix from a review file: "
                         "verdict, bottlenecks, sensitivity, report")
    rvw.add_argument("review", help="review YAML (see reviews/)")
    rvw.add_argument("-o", "--output", help="report directory (index.html, report.md, "
                     "results.parquet, figures)")
    rvw.add_argument("--json", action="store_true", help="print the results as JSON")
    rvw.add_argument("--seeds", type=int, help="seeds per service (overrides the file)")
    rvw.add_argument("--network", choices=NETWORKS, help="network model (overrides the file)")
    rvw.add_argument("--workers", type=int, help="processes (default: all cores; the numbers "
                     "do not depend on it)")
    rvw.set_defaults(func=_review)


def _add_goodput(sub) -> None:
    """The `fabsim goodput` sub-command."""
    g = sub.add_parser("goodput", help="a training job over weeks with failures, "
                       "checkpoints and restarts: ETTR, goodput, time lost by kind")
    g.add_argument("--topology", required=True)
    g.add_argument("--workload", required=True)
    g.add_argument("--duration", default="30d", help="simulated wall time, e.g. 54d")
    g.add_argument("--seeds", type=int, default=3, help="independent failure histories")
    g.add_argument("--failures", metavar="YAML", help="failure classes / restart / "
                   "checkpoint settings over topologies/reliability/failures.yaml")
    g.add_argument("--checkpoint-interval", metavar="TIME|auto", default=None,
                   help="default: the failures file's (auto: Young/Daly)")
    g.add_argument("--scan", action="store_true", help="also find the interval that "
                   "maximises goodput (9 intervals x seeds)")
    g.add_argument("--network", default=DEFAULT_NETWORK, choices=NETWORKS,
                   help="model of the healthy step")
    g.add_argument("--plot", metavar="PNG", help="timeline of the first seed")
    g.add_argument("--json", action="store_true")
    g.add_argument("--set", action="append", metavar="PATH=VALUE")
    g.add_argument("--wset", action="append", metavar="PATH=VALUE")
    g.set_defaults(func=_goodput)


def _add_sweep(sub) -> None:
    """The `fabsim sweep` sub-command."""
    sw = sub.add_parser("sweep", help="run a study: every point of its axes x seeds, one "
                        "Parquet row each, resumable")
    sw.add_argument("study", help="study YAML (see experiments/studies/)")
    sw.add_argument("-o", "--output", help="results directory (parts/ as points finish, "
                    "results.parquet at the end; a rerun skips finished points)")
    sw.add_argument("--workers", type=int, help="processes (default: all cores)")
    sw.add_argument("--backend", choices=["local", "ray"], default="local")
    sw.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    sw.add_argument("--quick", action="store_true", help="the study's reduced `quick:` "
                    "grid (CI, notebooks)")
    sw.add_argument("--json", action="store_true", help="print the rows as JSON")
    sw.set_defaults(func=_sweep)


def _add_validate(sub) -> None:
    """The `fabsim validate` sub-command."""
    val = sub.add_parser("validate", help="compare predictions with published measurements")
    val.add_argument("what", choices=["collectives", "training", "inference"])
    val.add_argument("--json", action="store_true")
    val.add_argument("--shared", metavar="DIR",
                     help="published measurements (default: $FABSIM_VALIDATION_DIR or "
                          "../shared/validation beside the repository checkout)")
    val.add_argument("--data", metavar="DIR",
                     help="further published rows (default: the checkout's "
                          "experiments/validation)")
    val.add_argument("--topologies", metavar="DIR",
                     help="bundled proposals the rows name (default: the checkout's "
                          "topologies)")
    val.set_defaults(func=_validate)

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fabsim", description="Simulate AI data-center fabrics.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_topo, _add_collective, _add_train, _add_serve, _add_goodput, _add_run,
                _add_compare, _add_plan, _add_review, _add_sweep, _add_validate):
        add(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from .errors import PlausibilityWarning

    if issubclass(category, PlausibilityWarning):
        print(f"fabsim: warning: {message}", file=sys.stderr)
    else:
        _PY_SHOWWARNING(message, category, filename, lineno, file, line)


_PY_SHOWWARNING = __import__("warnings").showwarning


# output options: (argument, a file (its folder must exist) or a folder (created))
_OUTPUTS = (("plot", "file"), ("output", None))


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any simulation, an output path that cannot be written: a file in a
    folder that does not exist, a folder under a regular file, an unwritable place."""
    import os
    from pathlib import Path

    for name, kind in _OUTPUTS:
        v = getattr(args, name, None)
        if not v:
            continue
        p = Path(v).expanduser()
        is_file = kind == "file" or (kind is None and p.suffix.lower() in
                                     (".png", ".svg", ".pdf"))
        flag = "--plot" if name == "plot" else "--output"
        if not is_file and p.exists() and not p.is_dir():
            raise ConfigError(f"{v!r} is a file, not a folder", field=flag)
        parent = p.parent if is_file else p
        if is_file and not parent.is_dir():
            raise ConfigError(f"folder {str(parent)!r} does not exist", field=flag)
        q = parent
        while not q.exists():
            q = q.parent
        if not q.is_dir():
            raise ConfigError(f"{str(q)!r} is a file, so {v!r} cannot be created",
                              field=flag)
        if not os.access(q, os.W_OK):
            raise ConfigError(f"{str(q)!r} is not writable", field=flag)


def main(argv: list[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        _check_outputs(args)
        return args.func(args)
    except SimError as e:
        print(f"fabsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
