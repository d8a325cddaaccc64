"""The ``fabsim`` command line.

Subcommands grow with the project; each prints a table (or JSON with ``--json``) and exits
0, or prints one line ``fabsim: error: <file>: <field>: <what>`` and exits 2 for a user's
mistake (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import SimError

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fabsim", description="Simulate AI data-center fabrics.")
    sub = p.add_subparsers(dest="command", required=True)

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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SimError as e:
        print(f"fabsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
