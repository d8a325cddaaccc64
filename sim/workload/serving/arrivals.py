"""When a service's requests arrive and how long they are: Poisson, gamma (with a
coefficient of variation), a trace file, or all at once; prompt and output lengths from
the service's distributions (a data set's pairs drawn together).

Main assumption: requests are independent of each other and of the service's state.
"""

from __future__ import annotations

import csv

import numpy as np

from ...errors import ConfigError, InfeasibleError
from .lengths import paired_lengths
from .spec import ServiceSpec

__all__ = ["draw_arrivals", "MAX_REQUESTS"]

#: Requests one simulated service may draw (per-request state is ~200 bytes in a dozen
#: arrays, and each request is several events): a pre-flight bound, not a tuning knob.
MAX_REQUESTS = 10_000_000


def draw_arrivals(s: ServiceSpec, duration: float, rng: np.random.Generator):
    """(arrival times, prompt lengths, output lengths) of every request."""
    if s.arrival == "trace":
        try:
            with open(s.trace, newline="") as fh:
                rows = list(csv.DictReader(fh))
            t = np.array([float(r["arrival_s"]) for r in rows])
            pl = np.array([int(r["prompt_tokens"]) for r in rows])
            ol = np.array([int(r["output_tokens"]) for r in rows])
        except FileNotFoundError:
            raise ConfigError("trace file not found", file=s.trace) from None
        except (KeyError, ValueError) as e:
            raise ConfigError(f"expected columns arrival_s, prompt_tokens, output_tokens "
                              f"({e})", file=s.trace) from None
        keep = t <= duration
        return t[keep], pl[keep], ol[keep]
    expected = s.rate if s.arrival == "all-at-once" else s.rate * duration
    if expected > MAX_REQUESTS:
        raise InfeasibleError(
            f"{s.file or s.name}: arrival.rate: about {expected:.3g} requests "
            + ("at once" if s.arrival == "all-at-once" else
               f"({s.rate:g}/s over {duration:g} s)")
            + f", more than the {MAX_REQUESTS:,} one run holds in memory; lower the rate "
            "or shorten the duration")
    if s.arrival == "all-at-once":
        n = int(s.rate)
        t = np.zeros(n)
    else:
        n_guess = int(s.rate * duration * 1.2 + 20)
        k = 1.0 / s.cv**2

        def gaps(m: int) -> np.ndarray:
            if s.arrival == "poisson":
                return rng.exponential(1.0 / s.rate, m)
            return rng.gamma(k, 1.0 / (s.rate * k), m)

        t = np.cumsum(gaps(n_guess))
        while t[-1] < duration:  # the same process, continued
            t = np.concatenate([t, t[-1] + np.cumsum(gaps(n_guess))])
        t = t[t <= duration]
        n = len(t)
    if paired_lengths(s.prompt, s.output):
        # one data set's two columns: sample i keeps its own prompt and output
        idx = s.prompt.draw(rng, n)
        return t, s.prompt.clip(np.asarray(s.prompt.values)[idx]), \
            s.output.clip(np.asarray(s.output.values)[idx])
    return t, s.prompt.sample(rng, n), s.output.sample(rng, n)
