"""An independent high-precision integrator for the tests (not the kernels' method).

Dense sums over all neurons in extended precision (numpy.longdouble, 64-bit mantissa on
x86-64), 5-point Gauss-Legendre with its nodes in closed form, on the pieces between the exact
kinks u +- eta/2, u. Returns each quantity with the scale that bounds its rounding error: the
same integral with every term replaced by its absolute value.
"""
import numpy as np
import pytest

LD = np.longdouble
_r = np.sqrt(LD(10) / LD(7))
NODES = np.array([-np.sqrt(5 + 2 * _r) / 3, -np.sqrt(5 - 2 * _r) / 3, LD(0),
                  np.sqrt(5 - 2 * _r) / 3, np.sqrt(5 + 2 * _r) / 3], dtype=LD)
_s = np.sqrt(LD(70))
WEIGHTS = np.array([(322 - 13 * _s) / 900, (322 + 13 * _s) / 900, LD(128) / 225,
                    (322 + 13 * _s) / 900, (322 - 13 * _s) / 900], dtype=LD)
KINKS = {"ramp": [-0.5, 0.5], "smoothstep": [-0.5, 0.0, 0.5], "relu": [0.0], "heaviside": [0.0]}
DS_SUP = {"ramp": 1, "smoothstep": 3, "relu": 1}     # sup |s'|


def s(name, z, lib=np):
    """s(z) in numpy (arrays) or in ``lib`` (mpmath, one point)."""
    if name == "ramp":
        return lib.minimum(lib.maximum(z + 0.5, 0), 1) if lib is np else min(max(z + 0.5, 0), 1)
    if name == "smoothstep":
        if lib is np:
            return np.select([z <= -0.5, z <= 0, z < 0.5], [0, 4 * (z + 0.5) ** 3, 1 - 4 * (0.5 - z) ** 3], 1).astype(z.dtype)
        return 0 if z <= -0.5 else 4 * (z + 0.5) ** 3 if z <= 0 else 1 - 4 * (0.5 - z) ** 3 if z < 0.5 else 1
    if name == "relu":
        return np.maximum(z, 0) if lib is np else max(z, 0)
    return (z >= 0).astype(z.dtype) if lib is np else (1 if z >= 0 else 0)


def ds(name, z):
    if name == "ramp":
        return ((z >= -0.5) & (z <= 0.5)).astype(z.dtype)
    if name == "smoothstep":
        return np.select([z <= -0.5, z <= 0, z < 0.5], [0, 12 * (z + 0.5) ** 2, 12 * (0.5 - z) ** 2], 0).astype(z.dtype)
    return (z > 0).astype(z.dtype)


def _nodes(*nets):
    pts = [LD(0), LD(1)]
    for n in nets:
        for k in KINKS[n.activation]:
            pts.extend(np.asarray(n.u, dtype=LD) + LD(k) * LD(n.eta))
    grid = np.unique(np.clip(np.array(pts, dtype=LD), 0, 1))
    mid, half = (grid[1:] + grid[:-1]) / 2, (grid[1:] - grid[:-1]) / 2
    return (mid[:, None] + half[:, None] * NODES).ravel(), (half[:, None] * WEIGHTS).ravel()


def _phi(net, x):
    z = (x[None, :] - np.asarray(net.u, dtype=LD)[:, None]) / LD(net.eta)
    return np.vstack([np.ones((1, x.size), dtype=LD), s(net.activation, z)]), z


def loss_grad(net, target):
    """Exact (L, grad_a, grad_u), each as (value, scale): the scale bounds the rounding of any
    float64 computation of it, the sum of |terms| plus what rounding each kink position to
    float64 can move (#kinks x eps x (1 + |u|) x the largest |integrand|)."""
    x, w = _nodes(net, target)
    phi, z = _phi(net, x)
    psi, _ = _phi(target, x)
    a, c = np.asarray(net.a, dtype=LD), np.asarray(target.a, dtype=LD)
    r = a @ phi - c @ psi
    mag = np.abs(a) @ np.abs(phi) + np.abs(c) @ np.abs(psi)
    moved = _moved([net, target])
    out = {"loss": (w @ r ** 2, w @ mag ** 2 + moved * (mag ** 2).max()),
           "grad_a": (2 * phi @ (w * r), 2 * np.abs(phi) @ (w * mag)
                      + moved * 2 * (np.abs(phi) * mag).max(axis=1)),
           "sup": mag.max()}
    if net.activation != "heaviside":
        d = ds(net.activation, z)
        k = -2 * a[1:] / LD(net.eta)
        # s' jumps at the kinks, so a kink that rounding moves can expose s' where it is 0 at
        # every exact node: the largest integrand is sup |s'| |r|, not the nodes' largest
        out["grad_u"] = (k * (d @ (w * r)), np.abs(k) * (np.abs(d) @ (w * mag)
                                                         + moved * DS_SUP[net.activation] * mag.max()))
    return out


def _moved(nets):
    """How far, in units of 1e-12 x the largest |integrand|, rounding the kink positions to
    float64 can move an integral: #kinks x eps x (1 + |u|)."""
    kinks = sum(len(KINKS[n.activation]) * n.m for n in nets)
    return LD(1e12 * 2.3e-16) * (kinks + 2) * (1 + max(np.abs(n.u).max(initial=0) for n in nets))


def gram(net):
    """Exact G and its scale (|G| plus what rounding the kinks can move)."""
    x, w = _nodes(net)
    phi, _ = _phi(net, x)
    G = (phi * w) @ phi.T
    peak = np.abs(phi).max(axis=1)
    return G, np.abs(G) + _moved([net]) * np.outer(peak, peak)


def loss_mpmath(net, target, dps=40):
    """L by mpmath's tanh-sinh quadrature between the exact kinks, for small networks."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(dps):
        def f(n, x):
            return mpmath.mpf(n.a[0]) + mpmath.fsum(
                mpmath.mpf(a) * s(n.activation, (x - mpmath.mpf(u)) / mpmath.mpf(n.eta), lib=mpmath)
                for a, u in zip(n.a[1:], n.u))
        pts = {mpmath.mpf(0), mpmath.mpf(1)}
        for n in (net, target):
            for k in KINKS[n.activation]:
                pts |= {min(max(mpmath.mpf(u) + mpmath.mpf(k) * mpmath.mpf(n.eta), 0), 1) for u in n.u}
        return mpmath.quad(lambda x: (f(net, x) - f(target, x)) ** 2, sorted(pts))
