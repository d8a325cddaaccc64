"""Exception types of fabsim.

Every error a user can cause derives from :class:`SimError`. The command line prints
``str(err)`` as one line and exits with status 2; it never shows a traceback for these.
Internal invariants use ``assert`` instead.
"""

from __future__ import annotations


class SimError(Exception):
    """Base class of all user-facing errors."""


class ConfigError(SimError):
    """A spec file is malformed: wrong type, missing unit, unknown key or reference.

    Parameters
    ----------
    message : str
        What was wrong and what was expected.
    file : str, optional
        The file the value came from.
    field : str, optional
        Dotted path of the field inside the file, e.g. ``scale_out.tiers[1].oversubscription``.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.bare = message
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)

    def at(self, *, file: str | None = None, field: str | None = None) -> ConfigError:
        """Return a copy that names the file and/or field if it did not already."""
        return type(self)(self.bare, file=self.file or file, field=self.field or field)


class TopologyError(ConfigError):
    """A spec is well-formed but describes a fabric that cannot be built as asked
    (switch radix too small, port speeds that do not match, a disconnected result)."""


class RoutingError(SimError):
    """No route exists between two endpoints, or a routing policy does not apply."""


class InfeasibleError(SimError):
    """A configuration that cannot run (does not fit in memory, sizes do not divide)."""


class PlausibilityWarning(UserWarning):
    """A value that is legal but almost certainly a unit mistake (HBM in Tb/s where TB/s
    was meant); the command line prints it as one ``fabsim: warning:`` line and goes on."""


def warn_implausible(message: str, *, file: str | None = None, field: str | None = None
                     ) -> None:
    """Emit a :class:`PlausibilityWarning` naming the file and field."""
    import warnings

    where = ": ".join(p for p in (file, field) if p)
    warnings.warn(PlausibilityWarning(f"{where}: {message}" if where else message),
                  stacklevel=2)
