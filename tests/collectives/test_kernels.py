"""The link-loads kernel against its pure-Python twin."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.collectives.kernels import link_loads, link_loads_py
from tests.strategies import csr


@settings(max_examples=200, deadline=None)
@given(csr(), st.data())
def test_link_loads_matches_twin(case, data):
    indptr, links, weights, _, n_links = case
    nbytes = np.array(data.draw(st.lists(st.floats(0, 1e9), min_size=len(indptr) - 1,
                                         max_size=len(indptr) - 1)))
    a = link_loads(indptr, links, weights, nbytes, n_links)
    b = link_loads_py(indptr, links, weights, nbytes, n_links)
    assert np.allclose(a, b, rtol=1e-12, atol=0)
    # bytes conserved: the total equals sum over flows of bytes x summed weights
    per_flow = [weights[indptr[f]:indptr[f + 1]].sum() for f in range(len(indptr) - 1)]
    assert np.isclose(a.sum(), float(np.dot(per_flow, nbytes)), rtol=1e-9, atol=1e-6)
