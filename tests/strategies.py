"""Hypothesis strategies: networks with neurons inside and outside [0, 1], coinciding
neurons, and kinks that meet (positions a multiple of eta/2 apart)."""
import numpy as np
from hypothesis import strategies as st

import twotimescale as tt

ETAS = st.sampled_from([1e-3, 4e-3, 0.05, 0.3, 1.0, 2.5])
TRAINABLE = ["ramp", "smoothstep", "relu"]
# weights are 0 or of magnitude >= 1e-6: squares of subnormal numbers underflow, in any code
weight = st.one_of(st.just(0.0), st.floats(1e-6, 5), st.floats(-5, -1e-6))


@st.composite
def positions(draw, m, eta):
    """m positions: free in [-0.5, 1.5], or on a lattice of step eta/2 (kinks meet),
    repeated (neurons coincide), or exactly 0 or 1."""
    base = draw(st.floats(-0.5, 1.5))
    pool = draw(st.lists(st.one_of(st.floats(-0.5, 1.5),
                                   st.integers(-6, 6).map(lambda k: base + k * eta / 2),
                                   st.sampled_from([0.0, 1.0])), min_size=1, max_size=m))
    return np.array(draw(st.lists(st.sampled_from(pool), min_size=m, max_size=m)))


@st.composite
def networks(draw, activations=TRAINABLE, max_m=12, eta=None):
    m = draw(st.integers(1, max_m))
    eta = draw(ETAS) if eta is None else eta
    u = draw(positions(m, eta))
    a = np.array(draw(st.lists(weight, min_size=m + 1, max_size=m + 1)))
    return tt.Network(a, u, eta=eta, activation=draw(st.sampled_from(activations)))


@st.composite
def targets(draw):
    """A piecewise-constant target, or a teacher network of any activation."""
    if draw(st.booleans()):
        breaks = np.sort(np.unique(draw(st.lists(st.floats(0.01, 0.99), min_size=0, max_size=6))))
        values = draw(st.lists(weight, min_size=len(breaks) + 1, max_size=len(breaks) + 1))
        return tt.PiecewiseConstant(breaks, values)
    return draw(networks(activations=list(tt.ACTIVATIONS), max_m=6))
