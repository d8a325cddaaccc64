"""The goodput command's table: ETTR and goodput over seeds, interruptions by cause, time
lost by kind, and the checkpoint interval (Young/Daly, and the scanned optimum)."""

from __future__ import annotations

import numpy as np

from .job import LOSS_KINDS, GoodputResult

__all__ = ["format_goodput", "aggregate"]


def _ci(v: list[float]) -> str:
    a = np.asarray(v, float)
    if len(a) < 2:
        return f"{a.mean():.4g}"
    return f"{a.mean():.4g} (seeds {a.min():.4g}-{a.max():.4g})"


def aggregate(results: list[GoodputResult]) -> dict:
    """Mean figures over seeds (and per-seed lists), JSON-ready."""
    s0 = results[0].summary
    keys = ("ettr", "goodput_tokens_per_s", "interruptions", "unexpected", "planned") + \
        tuple(f"lost_{k}_s" for k in LOSS_KINDS)
    out = {k: float(np.mean([r.summary[k] for r in results])) for k in keys}
    out.update({f"{k}_per_seed": [r.summary[k] for r in results] for k in ("ettr",
                                                                            "interruptions")})
    causes = sorted({c for r in results for c in r.summary["by_cause"]})
    out["by_cause_mean"] = {c: float(np.mean([r.summary["by_cause"].get(c, 0)
                                              for r in results])) for c in causes}
    for k in ("duration_s", "step_s", "healthy_tokens_per_s", "mtbf_s",
              "checkpoint_interval_s", "young_daly_interval_s", "checkpoint_bytes",
              "checkpoint_write_s", "checkpoint_read_s", "policy", "checkpoint_mode",
              "units"):
        out[k] = s0[k]
    out["seeds"] = [r.summary["seed"] for r in results]
    return out


def format_goodput(title: str, agg: dict, results: list[GoodputResult],
                   scan: dict | None = None) -> str:
    d = agg["duration_s"]
    lines = [f"# {title}",
             f"# {d / 86400:g} days, {len(results)} seed(s); healthy step {agg['step_s']:.3f} s "
             f"({agg['healthy_tokens_per_s']:,.0f} tokens/s); MTBF {agg['mtbf_s'] / 3600:.2f} h;"
             f" restart policy {agg['policy']}, {agg['checkpoint_mode']} checkpoints of "
             f"{agg['checkpoint_bytes'] / 1e12:.2f} TB ({agg['checkpoint_write_s']:.1f} s to "
             f"write) every {agg['checkpoint_interval_s']:.0f} s",
             f"effective training time ratio {_ci([r.summary['ettr'] for r in results])}",
             f"goodput {agg['goodput_tokens_per_s']:,.0f} tokens/s = "
             f"{agg['ettr'] * 100:.1f}% of healthy",
             f"interruptions {_ci([r.summary['interruptions'] for r in results])}: "
             f"{agg['unexpected']:.1f} unexpected, {agg['planned']:.1f} planned (mean)",
             "", f"{'cause':<26} {'mean count':>10}"]
    for c, n in sorted(agg["by_cause_mean"].items(), key=lambda x: -x[1]):
        lines.append(f"{c:<26} {n:>10.1f}")
    lines += ["", f"{'time lost to':<26} {'hours':>10} {'share':>7}"]
    for k in LOSS_KINDS:
        v = agg[f"lost_{k}_s"]
        lines.append(f"{k:<26} {v / 3600:>10.1f} {v / d * 100:>6.2f}%")
    lines.append(f"\ncheckpoint interval: Young/Daly sqrt(2 x {agg['checkpoint_write_s']:.1f} s"
                 f" x MTBF) = {agg['young_daly_interval_s']:.0f} s")
    if scan is not None:
        lines.append(f"scanned ({len(scan['grid'])} intervals x {len(results)} seeds): best "
                     f"grid point {scan['grid_best_s']:.0f} s, fitted optimum "
                     f"{scan['fitted_best_s']:.0f} s "
                     f"({(scan['fitted_best_s'] / scan['young_daly_s'] - 1) * 100:+.1f}% vs "
                     "Young/Daly)")
        for t, e in zip(scan["grid"]["interval_s"], scan["grid"]["ettr"], strict=True):
            lines.append(f"  every {t:>7.0f} s: ETTR {e:.4f}")
    return "\n".join(lines)
