"""Networks f(x; a, u) = a[0] + sum_j a[j] s((x - u[j]) / eta), validated once, on construction."""
import numpy as np

from ._compiled import _population

#: activation name -> the code the kernels use (ext/activations.pxd)
ACTIVATIONS = {"ramp": 0, "smoothstep": 1, "relu": 2, "heaviside": 3}


def as_array(value, name, ndim=1):
    """A finite float64 array of ``ndim`` dimensions, read-only, or a ValueError naming
    ``name``."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if arr.ndim != ndim:
        want = "one-dimensional" if ndim == 1 else "of shape (d, m)"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} must be finite, got {arr[tuple(bad)]} at index "
                         f"{bad[0] if ndim == 1 else tuple(bad)}")
    arr.setflags(write=False)
    return arr


def as_count(value, name, least):
    """A whole number >= ``least`` (not a bool), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    return int(value)


def activation_code(activation):
    """The kernels' code for the activation name, or a ValueError listing the names."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    return ACTIVATIONS[activation]


def as_positive(value, name):
    """A finite float > 0, or a ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    return v


class Network:
    """A shallow univariate network with ``m`` neurons and a bias.

    ``f(x) = a[0] + sum_{j=1..m} a[j] * s((x - u[j-1]) / eta)``, ``a`` of shape ``(m+1,)``
    (``a[0]`` is the bias), ``u`` of shape ``(m,)``; ``s`` is ``"ramp"``, ``"smoothstep"``,
    ``"relu"`` or ``"heaviside"`` (DESIGN.md section 2). Immutable: the arrays are read-only
    copies; ``replace`` makes a new network.
    """

    __slots__ = ("a", "u", "eta", "activation", "code")

    def __init__(self, a, u, eta, activation="ramp"):
        a = as_array(a, "a")
        u = as_array(u, "u")
        if a.shape != (u.shape[0] + 1,):
            raise ValueError(
                f"a must have shape (m+1,) = ({u.shape[0] + 1},) for u of shape ({u.shape[0]},) "
                f"(a[0] is the bias), got a of shape {a.shape}")
        self.code = activation_code(activation)
        self.a = a
        self.u = u
        self.eta = as_positive(eta, "eta")
        self.activation = activation

    @property
    def m(self):
        """Number of neurons."""
        return self.u.shape[0]

    def replace(self, a=None, u=None):
        """The same network with new outer weights ``a`` and/or positions ``u``."""
        return Network(self.a if a is None else a, self.u if u is None else u,
                       eta=self.eta, activation=self.activation)

    def __call__(self, x):
        """f evaluated at every point of the array ``x`` (same shape)."""
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"x must be an array of numbers: {exc}") from None
        flat = np.ascontiguousarray(x.ravel())
        if not np.all(np.isfinite(flat)):
            raise ValueError("x must be finite")
        out = np.empty_like(flat)
        _population.evaluate(self.a, self.u, self.eta, self.code, flat, out)
        return out.reshape(x.shape) if x.ndim else float(out[0])

    def __eq__(self, other):
        return (type(other) is type(self) and self.activation == other.activation
                and self.eta == other.eta and np.array_equal(self.a, other.a)
                and np.array_equal(self.u, other.u))

    __hash__ = None

    def __repr__(self):
        with np.printoptions(precision=4, threshold=8, edgeitems=3):
            return (f"Network(m={self.m}, eta={self.eta:g}, activation={self.activation!r}, "
                    f"a={self.a}, u={self.u})")


class PiecewiseConstant(Network):
    """The target ``f*(x) = values[k]`` on ``[breaks[k-1], breaks[k])``, as a heaviside network.

    ``breaks`` strictly increasing inside (0, 1); ``values`` has ``len(breaks) + 1`` entries.
    As a network: bias ``values[0]``, a jump of ``values[k+1] - values[k]`` at ``breaks[k]``.
    """

    __slots__ = ("breaks", "values")

    def __init__(self, breaks, values):
        breaks = as_array(breaks, "breaks")
        values = as_array(values, "values")
        if values.shape != (breaks.shape[0] + 1,):
            raise ValueError(f"values must have one entry per piece, len(breaks) + 1 = "
                             f"{breaks.shape[0] + 1}; got {values.shape[0]}")
        if breaks.size and not (breaks[0] > 0 and breaks[-1] < 1):
            raise ValueError(f"breaks must lie inside (0, 1), got {breaks}")
        if np.any(np.diff(breaks) <= 0):
            raise ValueError(f"breaks must be strictly increasing, got {breaks}")
        super().__init__(np.concatenate([values[:1], np.diff(values)]), breaks,
                         eta=1.0, activation="heaviside")
        self.breaks = breaks
        self.values = values

    def __repr__(self):
        return f"PiecewiseConstant(breaks={self.breaks.tolist()}, values={self.values.tolist()})"


def init_network(m, seed, eta, activation="ramp", a_scale=0.0):
    """The paper's initialisation: ``u`` sorted uniform on [0, 1), ``a = a_scale * U[0, 1)``.

    Draws come from ``numpy.random.default_rng(SeedSequence(seed))``: ``u`` first, then ``a``.
    """
    m = as_count(m, "m", 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    u = np.sort(rng.random(m))
    a = float(a_scale) * rng.random(m + 1)
    return Network(a, u, eta=eta, activation=activation)


class AdditiveNetwork:
    """An additive network on ``[0, 1]^d`` with ``m`` neurons per coordinate:

        f(x) = a0 + sum_{k=1..d} sum_{j=1..m} a[k, j] s((x_k - u[k, j]) / eta)

    ``a`` and ``u`` of shape ``(d, m)``. Coordinate k alone is the univariate network
    ``coordinate(k)`` (bias 0). Immutable, like :class:`Network`.
    """

    __slots__ = ("a0", "a", "u", "eta", "activation", "code")

    def __init__(self, a0, a, u, eta, activation="ramp"):
        try:
            self.a0 = float(a0)
        except (TypeError, ValueError):
            raise ValueError(f"a0 must be a number, got {a0!r}") from None
        if not np.isfinite(self.a0):
            raise ValueError(f"a0 must be finite, got {a0}")
        self.a = as_array(a, "a", ndim=2)
        self.u = as_array(u, "u", ndim=2)
        if self.a.shape != self.u.shape:
            raise ValueError(f"a and u must have the same shape (d, m); got {self.a.shape} "
                             f"and {self.u.shape}")
        self.code = activation_code(activation)
        self.eta = as_positive(eta, "eta")
        self.activation = activation

    @property
    def d(self):
        """Number of coordinates."""
        return self.u.shape[0]

    @property
    def m(self):
        """Neurons per coordinate."""
        return self.u.shape[1]

    def coordinate(self, k, bias=0.0):
        """The univariate network of coordinate k, with the given bias."""
        return Network(np.concatenate([[bias], self.a[k]]), self.u[k], eta=self.eta,
                       activation=self.activation)

    def replace(self, a0=None, a=None, u=None):
        return AdditiveNetwork(self.a0 if a0 is None else a0, self.a if a is None else a,
                               self.u if u is None else u, eta=self.eta,
                               activation=self.activation)

    def flat(self):
        """(a0, a[0], ..., a[d-1]) and (u[0], ..., u[d-1]): the kernels' layout."""
        return np.concatenate([[self.a0], self.a.ravel()]), np.ascontiguousarray(self.u.ravel())

    def __call__(self, X):
        """f at every row of ``X``, shape ``(n, d)``; returns shape ``(n,)``."""
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"X must be an array of numbers: {exc}") from None
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"X must have shape (n, {self.d}), got {X.shape}")
        return self.a0 + sum(self.coordinate(k)(X[:, k]) for k in range(self.d))

    def __eq__(self, other):
        return (type(other) is type(self) and self.activation == other.activation
                and self.eta == other.eta and self.a0 == other.a0
                and np.array_equal(self.a, other.a) and np.array_equal(self.u, other.u))

    __hash__ = None

    def __repr__(self):
        return (f"AdditiveNetwork(d={self.d}, m={self.m}, eta={self.eta:g}, "
                f"activation={self.activation!r}, a0={self.a0:.4g})")


def init_additive(d, m, seed, eta, activation="ramp", a_scale=0.0):
    """The appendix's initialisation, per coordinate: ``u`` sorted uniform on [0, 1),
    ``a = a_scale * U[0, 1)``; the bias ``a0 = a_scale * U[0, 1)`` too. Draws from
    ``default_rng(SeedSequence(seed))``: u (d rows), then a (d rows), then a0."""
    d, m = as_count(d, "d", 1), as_count(m, "m", 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    u = np.sort(rng.random((d, m)), axis=1)
    a = float(a_scale) * rng.random((d, m))
    return AdditiveNetwork(float(a_scale) * rng.random(), a, u, eta=eta, activation=activation)
