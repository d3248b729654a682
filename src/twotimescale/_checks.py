"""Every check of user input, in one place: each returns the value the kernels may trust, or
raises a ValueError or TypeError that names the argument and says what to change. The
kernels check nothing (docs/architecture.rst, "Validation")."""
from __future__ import annotations

import numpy as np

from ._compiled import _gaussian, _network, _sgd_dense


class Validated:
    """The base of the objects checked once, on construction, and frozen after (the
    networks): attributes are set once by ``_set`` in ``__init__``; afterwards assignment
    raises, so nothing a kernel was handed can change under it. ``kind`` says what inputs
    the network takes: "univariate" (x in [0, 1]), "additive" (x in [0, 1]^d) or
    "gaussian" (x ~ N(0, I_d)); ``additive`` is ``kind == "additive"``."""

    __slots__ = ()
    kind = "univariate"
    additive = False

    def _set(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable: make a new one with "
                             f"replace(...) instead of setting {name}")

    __delattr__ = __setattr__


def as_array(value, name: str, ndim: int = 1, shape: str = "(d, m)") -> np.ndarray:
    """A finite float64 array of ``ndim`` dimensions, read-only, or a ValueError naming
    ``name`` (and, for two dimensions, the ``shape`` it should have)."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if arr.ndim != ndim:
        want = "one-dimensional" if ndim == 1 else f"of shape {shape}"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} must be finite, got {arr[tuple(bad)]} at index "
                         f"{bad[0] if ndim == 1 else tuple(bad)}")
    arr.setflags(write=False)
    return arr


def as_count(value, name: str, least: int) -> int:
    """A whole number >= ``least`` (not a bool), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    return int(value)


def _float(value, name: str, want: str) -> float:
    """``value`` as a float, or a ValueError naming ``name`` and what it must be."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {want}, got {value!r}") from None


def as_finite(value, name: str) -> float:
    """A finite float, or a ValueError naming ``name``."""
    v = _float(value, name, "a number")
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def as_positive(value, name: str) -> float:
    """A finite float > 0, or a ValueError naming ``name``."""
    v = _float(value, name, "a positive number")
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    return v


def as_nonnegative(value, name: str) -> float:
    """A finite float >= 0, or a ValueError naming ``name``."""
    v = _float(value, name, "a number >= 0")
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return v


def as_width(value, name: str = "eta") -> float:
    """A width eta whose inverse is finite (the kernels scale by 1 / eta)."""
    v = as_positive(value, name)
    if v < np.finfo(float).tiny:
        raise ValueError(f"{name} must be at least {np.finfo(float).tiny:.3g} (1 / {name} must "
                         f"be finite), got {v:g}")
    return v


def choice(value, name: str, options) -> str:
    """One of the names ``options``, or a ValueError listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def activation_code(activation) -> int:
    """The kernels' code for the activation name, or a ValueError listing the names."""
    return _network.ACTIVATIONS[choice(activation, "activation", _network.ACTIVATIONS)]


def gaussian_activation_code(activation) -> int:
    """The Gaussian kernels' code for the activation name, or a ValueError listing them."""
    return _gaussian.ACTIVATIONS[choice(activation, "activation", _gaussian.ACTIVATIONS)]


def noise_code(noise_dist) -> int:
    """The kernels' code for the label-noise distribution, or a ValueError listing them."""
    return _sgd_dense.NOISE[choice(noise_dist, "noise_dist", _sgd_dense.NOISE)]


#: how an error message names each kind of network
KIND_NAMES = {"univariate": "a twotimescale.Network", "additive": "an AdditiveNetwork",
              "gaussian": "a GaussianNetwork"}


def network(net, name: str = "net", kinds=("univariate", "additive", "gaussian")):
    """``net`` itself if it is a network of one of the ``kinds``."""
    if not isinstance(net, Validated) or net.kind not in kinds:
        want = " or ".join(KIND_NAMES[k] for k in kinds)
        raise TypeError(f"{name} must be {want}, got {type(net).__name__}")
    return net


def trainable(net, name: str = "net"):
    """``net`` if gradient steps can train it: not a heaviside network, whose derivative is
    a Dirac mass, nor a HermiteTarget (the one place these refusals are written)."""
    network(net, name)
    if net.activation == "hermite":
        raise TypeError(f"{name}: a HermiteTarget is a teacher only; train a GaussianNetwork")
    if net.activation == "heaviside":
        raise ValueError(f"{name}: a heaviside network has no gradient in u (its derivative is "
                         "a Dirac mass); use a ramp, smoothstep or relu network, or the "
                         "eta -> 0 limit (limit_flow)")
    return net


#: the teachers of a GaussianNetwork, by its activation (docs/maths.rst §8)
GAUSSIAN_TEACHERS = {"relu": ("relu", "linear", "hermite"), "erf": ("erf", "linear"),
                     "linear": ("linear", "hermite")}


def pair(net, target, name: str = "net") -> str:
    """Check a student and its teacher: both univariate Networks, both AdditiveNetworks of
    the same d, or a GaussianNetwork and a teacher of the same d that the exact integrals
    cover (GAUSSIAN_TEACHERS). Returns their kind: "univariate", "additive" or "gaussian"."""
    network(net, name)
    network(target, "target")
    kind = net.kind
    if kind != target.kind or (kind != "univariate" and net.d != target.d):
        raise ValueError(f"{name} and target must be of one kind and the same dimension d: "
                         "both univariate Networks, both AdditiveNetworks, or a GaussianNetwork "
                         f"and a GaussianNetwork or HermiteTarget; got {net!r} and {target!r}")
    if kind == "gaussian" and target.activation not in GAUSSIAN_TEACHERS.get(net.activation, ()):
        pairs = "; ".join(f"{s} student: {', '.join(t)} teacher" for s, t in
                          GAUSSIAN_TEACHERS.items())
        raise ValueError(f"no exact integrals for a {net.activation} {name} against a "
                         f"{target.activation} target; the pairs that exist are: {pairs}")
    return kind


def seed(value, name: str = "seed") -> np.random.SeedSequence:
    """A SeedSequence from a whole number >= 0 (or a SeedSequence itself)."""
    if isinstance(value, np.random.SeedSequence):
        return value
    try:
        return np.random.SeedSequence(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a whole number >= 0 or a SeedSequence: {exc}") from None


#: the children of a run's seed, one per source of randomness (docs/maths.rst §4.3)
STREAMS = {"network": 0, "samples": 1, "batches": 2}


def stream(value, role: str, name: str = "seed") -> np.random.SeedSequence:
    """The child of ``value``'s SeedSequence that feeds ``role`` ("network": the initial
    draw; "samples": SGD's inputs and noise, or GD's data set; "batches": GD's batch order),
    so that one seed gives independent streams for each."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return np.random.SeedSequence(value, spawn_key=(STREAMS[role],))   # the usual case
    root = seed(value, name)
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, STREAMS[role]),
                                  pool_size=root.pool_size)


#: the most steps (or epochs) one run takes: step counts stay exact in float64 and in the
#: kernels' integers (a run of that length would take years)
MAX_STEPS = 2 ** 53


def steps(h: float, eps: float, t_end, steps) -> int:
    """The step count of a run given ``t_end`` (slow time) or ``steps``, exactly one."""
    if (t_end is None) == (steps is None):
        raise ValueError("give exactly one of t_end (slow time) and steps")
    if steps is not None:
        n = as_count(steps, "steps", 1)
        if n > MAX_STEPS:
            raise ValueError(f"steps must be at most 2^53 = {MAX_STEPS:.3g}, got {n}")
        return n
    t_end = as_positive(t_end, "t_end")
    ratio = t_end / h / eps
    if not ratio <= MAX_STEPS:
        raise ValueError(f"t_end / (h * eps) = {ratio:.3g} steps, more than a run can take "
                         f"(2^53 = {MAX_STEPS:.3g}); raise h or eps, or lower t_end")
    n = round(ratio)
    if n < 1:
        raise ValueError(f"t_end = {t_end} is less than one step (h * eps = {h * eps}); "
                         "raise t_end or h")
    return n


#: the most recorded values one run may hold (8 GiB of float64)
MAX_RECORD_VALUES = 2 ** 30


def record_steps(steps: int, n_records, width: int = 1) -> np.ndarray:
    """``n_records`` steps evenly spaced from 0 to ``steps``, first and last included (at
    most steps + 1 of them exist, so no more are made); ``width`` values each must fit in
    MAX_RECORD_VALUES."""
    n_records = min(as_count(n_records, "n_records", 2), steps + 1)
    if n_records * width > MAX_RECORD_VALUES:
        raise ValueError(f"n_records = {n_records} records of {width} values would take "
                         f"{n_records * width * 8 / 2 ** 30:.3g} GiB; lower n_records")
    return np.unique(np.round(np.linspace(0, steps, n_records)).astype(np.intp))


def inputs(X, rows, d: int, name: str) -> np.ndarray:
    """Inputs as a C-contiguous (rows, d) float64 array: (rows,) is accepted for d = 1."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if X.ndim == 1 and d == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != d or (rows is not None and X.shape[0] != rows):
        want = f"({rows if rows is not None else 'n'},{'' if d == 1 else f' {d}'})"
        raise ValueError(f"{name} must have shape {want}, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must be finite")
    return np.ascontiguousarray(X)


def data(X, Y, target, d: int):
    """A data set: X as (n, d) inputs, n >= 1, and Y one finite label per point (the
    target's values at X by default)."""
    X = inputs(X, None, d, "X")
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one point")
    try:
        Y = (target(X[:, 0] if target.kind == "univariate" else X) if Y is None
             else np.ascontiguousarray(Y, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Y must be an array of numbers: {exc}") from None
    if Y.shape != (X.shape[0],):
        raise ValueError(f"Y must have one value per point of X, shape ({X.shape[0]},); "
                         f"got {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y must be finite")
    return X, Y


def samples(value, steps: int, d: int, name: str = "samples"):
    """A pair (x of shape (steps, d), xi of shape (steps,)), finite."""
    try:
        x, xi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (x, xi) of arrays of length steps") from None
    x = inputs(x, steps, d, f"{name}: x")
    xi = np.ascontiguousarray(xi, dtype=np.float64)
    if xi.shape != (steps,):
        raise ValueError(f"{name}: xi must have shape ({steps},) (one per step), got {xi.shape}")
    if not np.all(np.isfinite(xi)):
        raise ValueError(f"{name}: xi must be finite")
    return x, xi


def workers(value) -> int:
    """Threads to use: all cores by default."""
    import os
    if value is None:
        return os.cpu_count() or 1
    return as_count(value, "workers", 1)
