"""Serving policies that are choices, each a small class registered in one dict: how a
request is routed to a replica.

A new router is one class with ``pick(outstanding) -> replica index`` plus its test,
registered in :data:`ROUTERS`. Pure: no SimPy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROUTERS", "LeastOutstanding", "RoundRobin", "make_router"]


class RoundRobin:
    """Replicas in turn, whatever their load."""

    def __init__(self):
        self.next = 0

    def pick(self, outstanding: np.ndarray) -> int:
        r = self.next % len(outstanding)
        self.next += 1
        return r


class LeastOutstanding:
    """The replica with the fewest requests in flight (the first of those tied)."""

    def pick(self, outstanding: np.ndarray) -> int:
        return int(np.argmin(outstanding))


ROUTERS = {"round_robin": RoundRobin, "least_outstanding": LeastOutstanding}


def make_router(name: str):
    """A fresh router called ``name`` (one of :data:`ROUTERS`)."""
    return ROUTERS[name]()
