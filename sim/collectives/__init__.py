"""Collective communication on a fabric: algorithms that turn (op, ranks, bytes) into
phases of flows, and the kernels that turn phases into link loads and times."""
