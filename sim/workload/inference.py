"""Temporary alias of :mod:`sim.workload.serving` while the validation split lands."""

from .serving import *  # noqa: F403
from .serving import __all__  # noqa: F401
