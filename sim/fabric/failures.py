"""Links that fail or degrade, and their repair: the graph changes in place (a failed
cable bundle loses cables, a dead one its edge in both directions, a degraded one runs at
a fraction of its rate) and every route, compiled array and routing index derived from the
fabric is forgotten (:meth:`Fabric.invalidate`), so ECMP, spraying and adaptive routing
spread over the surviving paths the next time anything is routed.

Main assumption: routing converges at once (no black-holing while the fabric reacts); a
failure is undone by :func:`repair` with the token :func:`fail_links` returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..errors import TopologyError
from .fabric import Fabric

__all__ = ["LinkFailure", "fail_links", "repair"]


@dataclass(frozen=True)
class LinkFailure:
    """What :func:`fail_links` changed: (u, v, edge attributes before) of each edge."""

    before: tuple


def fail_links(f: Fabric, pairs, *, cables: int | None = None, rate: float = 0.0
               ) -> LinkFailure:
    """Fail the links between each node pair of ``pairs`` (both directions).

    Parameters
    ----------
    f : Fabric
        Changed in place.
    pairs : iterable of (str, str)
        Node names joined by a link.
    cables : int, optional
        Cables of each bundle that fail (default: all of them).
    rate : float
        For the cables that remain: 0 removes a link whose cables all failed; a value in
        (0, 1) degrades the whole bundle to that fraction of its rate instead (a link
        running at a lower speed, a flapping link on average).

    Returns
    -------
    LinkFailure
        For :func:`repair`.

    Raises
    ------
    TopologyError
        A pair is not joined by a link, a count or rate out of range, or the failure
        would cut the fabric in two.
    """
    g = f.graph
    if not 0.0 <= rate < 1.0:
        raise TopologyError(f"rate must be in [0, 1), got {rate}", field="rate")
    before = []
    for u, v in pairs:
        for a, b in ((u, v), (v, u)):
            if not g.has_edge(a, b):
                raise TopologyError(f"no link {a} -> {b} to fail", field="links")
            before.append((a, b, dict(g.edges[a, b])))
    for a, b, d in before:
        n = int(d.get("count", 1))
        k = n if cables is None else int(cables)
        if not 1 <= k <= n:
            raise TopologyError(f"{a} -> {b} has {n} cables, cannot fail {k}",
                                field="cables")
        per = d["capacity"] / n
        if k == n and rate == 0.0:
            g.remove_edge(a, b)
        elif rate > 0.0:
            g.edges[a, b].update(capacity=d["capacity"] * rate)
        else:
            g.edges[a, b].update(count=n - k, capacity=per * (n - k))
    if g.number_of_nodes() and not nx.is_weakly_connected(g):
        repair(f, LinkFailure(tuple(before)))
        raise TopologyError("failing these links would cut the fabric in two",
                            field="links")
    f.invalidate()
    return LinkFailure(tuple(before))


def repair(f: Fabric, token: LinkFailure) -> None:
    """Undo :func:`fail_links`: every edge as it was, routes recomputed on next use."""
    g = f.graph
    for a, b, d in token.before:
        if g.has_edge(a, b):
            g.edges[a, b].clear()
            g.edges[a, b].update(d)
        else:
            g.add_edge(a, b, **d)
    f.invalidate()
