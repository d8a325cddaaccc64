"""fabsim: a discrete-event simulator of AI data-center fabrics.

The public API. Quantities are SI floats (seconds, bytes, bytes/s, FLOP/s, watts, USD).
"""

from .catalog import Catalog, load_catalog
from .errors import ConfigError, InfeasibleError, RoutingError, SimError, TopologyError
from .fabric import Fabric, Route, load_topology, summarize

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "ConfigError",
    "Fabric",
    "InfeasibleError",
    "Route",
    "RoutingError",
    "SimError",
    "TopologyError",
    "load_catalog",
    "load_topology",
    "summarize",
]
