"""Token-length distributions of a service's prompts and outputs: fixed, uniform, normal,
lognormal, or a data set's own lengths (empirical, read from a file).

Main assumption: lengths are integers >= 1, known to the simulator when a request arrives
(not to the scheduler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError

__all__ = ["Lengths", "paired_lengths", "read_lengths"]


@dataclass
class Lengths:
    """A token-length distribution: fixed, uniform, normal, lognormal, or empirical (a
    data set's own lengths: drawn without replacement while they last, as a benchmark
    issues each sample once, then with replacement; a service whose prompt and output
    lengths are both empirical with as many values draws them as pairs). Integers >= 1."""

    dist: str = "fixed"
    mean: float = 128.0
    sigma: float = 0.0  # normal: std; lognormal: sigma of log
    low: int = 1
    high: int = 10**9
    values: tuple = ()  # empirical: the lengths

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "empirical":
            x = np.asarray(self.values, np.int64)[self.draw(rng, n)]
        elif self.dist == "fixed":
            x = np.full(n, self.mean)
        elif self.dist == "uniform":
            x = rng.integers(self.low, self.high + 1, n)
        elif self.dist == "normal":
            x = rng.normal(self.mean, self.sigma, n)
        else:  # lognormal with the given mean
            mu = math.log(self.mean) - self.sigma**2 / 2
            x = rng.lognormal(mu, self.sigma, n)
        return self.clip(x)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Indices of ``n`` empirical values: without replacement while they last, as a
        benchmark issues each sample once, then with replacement."""
        m = len(self.values)
        return rng.permutation(m)[:n] if n <= m else rng.choice(m, n)

    def clip(self, x) -> np.ndarray:
        """Lengths rounded and clipped to [max(1, low), high]."""
        return np.clip(np.rint(x), max(1, self.low), self.high).astype(np.int64)



def read_lengths(path: str | Path) -> tuple:
    """Token lengths, one integer >= 1 per line ('#' starts a comment)."""
    try:
        with open(path) as fh:
            lines = [(i, ln.split("#", 1)[0].strip()) for i, ln in enumerate(fh, 1)]
    except OSError as e:
        raise ConfigError(f"cannot read lengths file ({e.strerror})", file=str(path)) from None
    out = []
    for i, text in lines:
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"line {i}: expected a token length (integer >= 1), got "
                              f"{text!r}", file=str(path))
        out.append(int(text))
    if not out:
        raise ConfigError("no lengths in the file", file=str(path))
    return tuple(out)


def paired_lengths(prompt: Lengths, output: Lengths) -> bool:
    """Prompt and output lengths both empirical with as many values: drawn as pairs (the
    i-th prompt with the i-th output), as a data set's two columns."""
    return (prompt.dist == output.dist == "empirical" and
            len(prompt.values) == len(output.values))
