"""When a service's requests arrive and how long they are: Poisson, gamma (with a
coefficient of variation), a trace file, or all at once; prompt and output lengths from
the service's distributions (a data set's pairs drawn together).

Main assumption: requests are independent of each other and of the service's state.
"""

from __future__ import annotations

import csv

import numpy as np

from ...errors import ConfigError
from .lengths import paired_lengths
from .spec import ServiceSpec

__all__ = ["draw_arrivals"]


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
    if s.arrival == "all-at-once":
        n = int(s.rate)
        t = np.zeros(n)
    else:
        n_guess = int(s.rate * duration * 1.2 + 20)
        if s.arrival == "poisson":
            gaps = rng.exponential(1.0 / s.rate, n_guess)
        else:
            k = 1.0 / s.cv**2
            gaps = rng.gamma(k, 1.0 / (s.rate * k), n_guess)
        t = np.cumsum(gaps)
        while t[-1] < duration:
            more = rng.exponential(1.0 / s.rate, n_guess)
            t = np.concatenate([t, t[-1] + np.cumsum(more)])
        t = t[t <= duration]
        n = len(t)
    if paired_lengths(s.prompt, s.output):
        # one data set's two columns: sample i keeps its own prompt and output
        idx = s.prompt.draw(rng, n)
        return t, s.prompt.clip(np.asarray(s.prompt.values)[idx]), \
            s.output.clip(np.asarray(s.output.values)[idx])
    return t, s.prompt.sample(rng, n), s.output.sample(rng, n)
