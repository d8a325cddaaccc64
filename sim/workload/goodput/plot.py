"""Timeline figure of one goodput run: compute, checkpoint and down segments, with the
interruptions marked by cause."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from .job import GoodputResult

__all__ = ["plot_goodput"]


def plot_goodput(r: GoodputResult, path: str | Path) -> None:
    """Write the timeline of ``r`` to the PNG ``path`` (its folder must exist)."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    if not Path(path).resolve().parent.is_dir():
        raise ConfigError(f"folder {str(Path(path).parent)!r} does not exist",
                          field="--plot")
    tl, rows = r.timeline, r.interruptions
    fig = Figure(figsize=(12, 4.5))
    ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    colour = {"compute": "tab:green", "checkpoint": "tab:blue", "down": "tab:red"}
    for state, g in tl.groupby("state"):
        ax[0].broken_barh(list(zip(g["start_s"] / 86400, (g["end_s"] - g["start_s"]) / 86400,
                                   strict=True)), (0, 1), color=colour.get(state, "k"),
                          label=state)
    ax[0].set_yticks([])
    ax[0].legend(loc="upper right", fontsize=7, ncol=3)
    causes = list(rows["cause"].value_counts().index)
    for i, c in enumerate(causes):
        t = rows.loc[rows["cause"] == c, "time_s"] / 86400
        ax[1].plot(t, [i] * len(t), "|", ms=8)
    ax[1].set_yticks(range(len(causes)), causes, fontsize=6)
    ax[1].set_xlabel("days")
    s = r.summary
    fig.suptitle(f"ETTR {s['ettr'] * 100:.1f}%, {s['interruptions']} interruptions, "
                 f"checkpoint every {s['checkpoint_interval_s']:.0f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
