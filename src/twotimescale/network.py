"""Networks ``f(x; a, u) = a[0] + sum_j a[j] s((x - u[j]) / eta)``, validated once, on
construction, and immutable after (docs/maths.rst §1-2).

Each network builds its kernel view once (``_kernel``, a ``twotimescale._network.Net``
holding its own copies of the arrays): every kernel call passes that one object.
"""
from __future__ import annotations

import numpy as np

from . import _checks
from ._compiled import _gaussian, _network

#: activation name -> the kernels' code (defined once, in ext/twotimescale/_network.pyx)
ACTIVATIONS = _network.ACTIVATIONS
#: the activations of a GaussianNetwork (defined once, in ext/twotimescale/_gaussian.pyx)
GAUSSIAN_ACTIVATIONS = _gaussian.ACTIVATIONS


class Network(_checks.Validated):
    """A shallow univariate network with ``m`` neurons and a bias.

    ``f(x) = a[0] + sum_{j=1..m} a[j] * s((x - u[j-1]) / eta)`` (docs/maths.rst §1).

    Parameters
    ----------
    a : array_like, shape (m+1,)
        Outer weights; ``a[0]`` is the bias.
    u : array_like, shape (m,)
        Positions of the neurons.
    eta : float
        Width of the activation's transition, > 0.
    activation : {"ramp", "smoothstep", "relu", "heaviside"}
        The activation ``s`` (docs/maths.rst §2).

    Notes
    -----
    Immutable: the arrays are read-only copies and the attributes cannot be reassigned;
    :meth:`replace` makes a new network.
    """

    __slots__ = ("a", "u", "eta", "activation", "_kernel")

    def __init__(self, a, u, eta, activation="ramp"):
        a = _checks.as_array(a, "a")
        u = _checks.as_array(u, "u")
        if a.shape != (u.shape[0] + 1,):
            raise ValueError(
                f"a must have shape (m+1,) = ({u.shape[0] + 1},) for u of shape ({u.shape[0]},) "
                f"(a[0] is the bias), got a of shape {a.shape}")
        code = _checks.activation_code(activation)
        eta = _checks.as_width(eta)
        self._set(a=a, u=u, eta=eta, activation=activation,
                  _kernel=_network.Net(a, u, eta, code))

    @property
    def m(self) -> int:
        """Number of neurons."""
        return self.u.shape[0]

    @property
    def code(self) -> int:
        """The kernels' code of the activation."""
        return self._kernel.code

    def replace(self, a=None, u=None) -> "Network":
        """The same network with new outer weights ``a`` and/or positions ``u``."""
        return Network(self.a if a is None else a, self.u if u is None else u,
                       eta=self.eta, activation=self.activation)

    def flat(self):
        """(a, u): the layout of :meth:`from_flat` and of a :class:`Trajectory` record."""
        return self.a, self.u

    def from_flat(self, a, u) -> "Network":
        """The network at the flat parameters of a :class:`Trajectory` record (for a
        univariate network, ``a`` and ``u`` themselves)."""
        return self.replace(a=a, u=u)

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
        _network.evaluate(self._kernel, flat, out)
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

    Parameters
    ----------
    breaks : array_like, shape (K,)
        Strictly increasing, inside (0, 1).
    values : array_like, shape (K+1,)
        The value on each piece.

    Notes
    -----
    As a network: bias ``values[0]``, a jump of ``values[k+1] - values[k]`` at ``breaks[k]``.
    """

    __slots__ = ("breaks", "values")

    def __init__(self, breaks, values):
        breaks = _checks.as_array(breaks, "breaks")
        values = _checks.as_array(values, "values")
        if values.shape != (breaks.shape[0] + 1,):
            raise ValueError(f"values must have one entry per piece, len(breaks) + 1 = "
                             f"{breaks.shape[0] + 1}; got {values.shape[0]}")
        if breaks.size and not (breaks[0] > 0 and breaks[-1] < 1):
            raise ValueError(f"breaks must lie inside (0, 1), got {breaks}")
        if np.any(np.diff(breaks) <= 0):
            raise ValueError(f"breaks must be strictly increasing, got {breaks}")
        super().__init__(np.concatenate([values[:1], np.diff(values)]), breaks,
                         eta=1.0, activation="heaviside")
        self._set(breaks=breaks, values=values)

    def __repr__(self):
        return f"PiecewiseConstant(breaks={self.breaks.tolist()}, values={self.values.tolist()})"


def init_network(m: int, seed, eta: float, activation: str = "ramp",
                 a_scale: float = 0.0) -> Network:
    """The paper's initialisation: ``u`` sorted uniform on [0, 1), ``a = a_scale * U[0, 1)``.

    Draws come from the seed's "network" child (``SeedSequence(seed, spawn_key=(0,))``,
    docs/maths.rst §4.3), independent of the samples ``sgd(seed=seed)`` draws: ``u`` first,
    then ``a``.
    """
    m = _checks.as_count(m, "m", 1)
    rng = np.random.default_rng(_checks.stream(seed, "network"))
    u = np.sort(rng.random(m))
    a = _checks.as_finite(a_scale, "a_scale") * rng.random(m + 1)
    return Network(a, u, eta=eta, activation=activation)


class AdditiveNetwork(_checks.Validated):
    """An additive network on ``[0, 1]^d`` with ``m`` neurons per coordinate
    (docs/maths.rst §1.2):

        f(x) = a0 + sum_{k=1..d} sum_{j=1..m} a[k, j] s((x_k - u[k, j]) / eta)

    Parameters
    ----------
    a0 : float
        The bias.
    a, u : array_like, shape (d, m)
        Outer weights and positions, coordinate by coordinate.
    eta : float
        Width of the activation's transition, > 0.
    activation : {"ramp", "smoothstep", "relu", "heaviside"}

    Notes
    -----
    Coordinate k alone is the univariate network ``coordinate(k)`` (bias 0). Immutable, like
    :class:`Network`.
    """

    __slots__ = ("a0", "a", "u", "eta", "activation", "_kernel")
    kind = "additive"
    additive = True

    def __init__(self, a0, a, u, eta, activation="ramp"):
        try:
            a0 = float(a0)
        except (TypeError, ValueError):
            raise ValueError(f"a0 must be a number, got {a0!r}") from None
        if not np.isfinite(a0):
            raise ValueError(f"a0 must be finite, got {a0}")
        a = _checks.as_array(a, "a", ndim=2)
        u = _checks.as_array(u, "u", ndim=2)
        if a.shape != u.shape:
            raise ValueError(f"a and u must have the same shape (d, m); got {a.shape} "
                             f"and {u.shape}")
        if u.shape[0] < 1 or u.shape[1] < 1:
            raise ValueError(f"an AdditiveNetwork needs d >= 1 coordinates of m >= 1 neurons; "
                             f"got a and u of shape {u.shape}")
        code = _checks.activation_code(activation)
        eta = _checks.as_width(eta)
        self._set(a0=a0, a=a, u=u, eta=eta, activation=activation,
                  _kernel=_network.Net(np.concatenate([[a0], a.ravel()]), u.ravel(), eta, code,
                                       u.shape[0]))

    @property
    def d(self) -> int:
        """Number of coordinates."""
        return self.u.shape[0]

    @property
    def m(self) -> int:
        """Neurons per coordinate."""
        return self.u.shape[1]

    @property
    def code(self) -> int:
        """The kernels' code of the activation."""
        return self._kernel.code

    def coordinate(self, k: int, bias: float = 0.0) -> Network:
        """The univariate network of coordinate k, with the given bias."""
        return Network(np.concatenate([[bias], self.a[k]]), self.u[k], eta=self.eta,
                       activation=self.activation)

    def replace(self, a0=None, a=None, u=None) -> "AdditiveNetwork":
        """The same network with new parameters where given."""
        return AdditiveNetwork(self.a0 if a0 is None else a0, self.a if a is None else a,
                               self.u if u is None else u, eta=self.eta,
                               activation=self.activation)

    def flat(self):
        """(a0, a[0], ..., a[d-1]) and (u[0], ..., u[d-1]): the kernels' layout."""
        return self._kernel.a, self._kernel.u

    def from_flat(self, a, u) -> "AdditiveNetwork":
        """The network at flat parameters (the layout of :meth:`flat` and of a
        :class:`Trajectory` record)."""
        return self.replace(a0=a[0], a=np.reshape(a[1:], (self.d, self.m)),
                            u=np.reshape(u, (self.d, self.m)))

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


def init_additive(d: int, m: int, seed, eta: float, activation: str = "ramp",
                  a_scale: float = 0.0) -> AdditiveNetwork:
    """The appendix's initialisation, per coordinate: ``u`` sorted uniform on [0, 1),
    ``a = a_scale * U[0, 1)``; the bias ``a0 = a_scale * U[0, 1)`` too. Draws from
    the seed's "network" child (docs/maths.rst §4.3): u (d rows), then a (d rows), then a0."""
    d, m = _checks.as_count(d, "d", 1), _checks.as_count(m, "m", 1)
    rng = np.random.default_rng(_checks.stream(seed, "network"))
    a_scale = _checks.as_finite(a_scale, "a_scale")
    u = np.sort(rng.random((d, m)), axis=1)
    a = a_scale * rng.random((d, m))
    return AdditiveNetwork(a_scale * rng.random(), a, u, eta=eta, activation=activation)


class GaussianNetwork(_checks.Validated):
    """A shallow network on Gaussian inputs ``x ~ N(0, I_d)`` (docs/maths.rst §8):

        f(x) = a[0] + sum_{j=1..m} a[j] s(W[j-1] . x)

    Parameters
    ----------
    a : array_like, shape (m+1,)
        Outer weights; ``a[0]`` is the bias.
    W : array_like, shape (m, d)
        Inner weights, one row per neuron.
    activation : {"relu", "erf", "linear"}
        ``max(z, 0)``, ``erf(z / sqrt 2)`` or ``z``. A ReLU network refuses a zero row: its
        population gradient does not exist there.

    Notes
    -----
    Immutable, like :class:`Network`; :meth:`replace` makes a new one. Flat parameters (the
    layout of a :class:`Trajectory` record) are ``a`` and ``W`` by rows.
    """

    __slots__ = ("a", "W", "activation", "_kernel")
    kind = "gaussian"

    def __init__(self, a, W, activation="relu"):
        a = _checks.as_array(a, "a")
        W = _checks.as_array(W, "W", ndim=2, shape="(m, d)")
        if a.shape != (W.shape[0] + 1,):
            raise ValueError(f"a must have shape (m+1,) = ({W.shape[0] + 1},) for W of shape "
                             f"{W.shape} (a[0] is the bias), got a of shape {a.shape}")
        if W.shape[1] < 1:
            raise ValueError(f"W must have d >= 1 columns, got shape {W.shape}")
        code = _checks.gaussian_activation_code(activation)
        if activation == "relu":
            zero = np.flatnonzero(~W.any(axis=1))
            if zero.size:
                raise ValueError(f"W[{zero[0]}] is zero: a ReLU neuron's population gradient "
                                 "does not exist at w = 0; give every row a nonzero entry")
        self._set(a=a, W=W, activation=activation,
                  _kernel=_network.Net(a, W.ravel(), 1.0, code, W.shape[1],
                                       _network.KINDS["gaussian"]))

    @property
    def m(self) -> int:
        """Number of neurons."""
        return self.W.shape[0]

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.W.shape[1]

    @property
    def code(self) -> int:
        """The Gaussian kernels' code of the activation."""
        return self._kernel.code

    def replace(self, a=None, W=None) -> "GaussianNetwork":
        """The same network with new outer weights ``a`` and/or inner weights ``W``."""
        return GaussianNetwork(self.a if a is None else a, self.W if W is None else W,
                               activation=self.activation)

    def flat(self):
        """(a, W by rows): the layout of :meth:`from_flat` and of a Trajectory record."""
        return self._kernel.a, self._kernel.u

    def from_flat(self, a, u) -> "GaussianNetwork":
        """The network at flat parameters (``u`` holds W by rows)."""
        return self.replace(a=a, W=np.reshape(u, (self.m, self.d)))

    def __call__(self, X):
        """f at every row of ``X``, shape ``(n, d)`` (or one point, shape ``(d,)``)."""
        return _evaluate(self, X)

    def __eq__(self, other):
        return (type(other) is type(self) and self.activation == other.activation
                and np.array_equal(self.a, other.a) and np.array_equal(self.W, other.W))

    __hash__ = None

    def __repr__(self):
        return f"GaussianNetwork(m={self.m}, d={self.d}, activation={self.activation!r})"


class HermiteTarget(_checks.Validated):
    """The single-index polynomial ``f*(x) = sum_k coeffs[k] He_k(v . x)``, ``x ~ N(0, I_d)``,
    with the probabilists' Hermite polynomials He_k (docs/maths.rst §8.2): a teacher for
    ReLU and linear GaussianNetworks.

    Parameters
    ----------
    v : array_like, shape (d,)
        The direction, of norm 1 (to 1e-9; it is then normalised exactly).
    coeffs : array_like, shape (K+1,)
        ``coeffs[k]`` multiplies He_k; ``E f* = coeffs[0]``, ``E f*^2 = sum_k coeffs[k]^2 k!``.
    """

    __slots__ = ("v", "coeffs", "_kernel")
    kind = "gaussian"
    activation = "hermite"

    def __init__(self, v, coeffs):
        v = _checks.as_array(v, "v")
        coeffs = _checks.as_array(coeffs, "coeffs")
        if v.size < 1 or coeffs.size < 1:
            raise ValueError(f"v and coeffs must not be empty, got shapes {v.shape} and "
                             f"{coeffs.shape}")
        norm = float(np.linalg.norm(v))
        if abs(norm - 1.0) > 1e-9:
            raise ValueError(f"v must have norm 1 (the expectations assume it), got "
                             f"|v| = {norm!r}; pass v / |v|")
        v = v / norm
        v.setflags(write=False)
        self._set(v=v, coeffs=coeffs,
                  _kernel=_network.Net(coeffs, v, 1.0, -1, v.size, _network.KINDS["hermite"]))

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.v.size

    def __call__(self, X):
        """f* at every row of ``X``, shape ``(n, d)`` (or one point, shape ``(d,)``)."""
        return _evaluate(self, X)

    def __eq__(self, other):
        return (type(other) is type(self) and np.array_equal(self.v, other.v)
                and np.array_equal(self.coeffs, other.coeffs))

    __hash__ = None

    def __repr__(self):
        return f"HermiteTarget(d={self.d}, coeffs={self.coeffs.tolist()})"


def _evaluate(net, X):
    """The kernel's f at the rows of X (n, d), or at one point (d,)."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be an array of numbers: {exc}") from None
    one = X.ndim == 1
    X = _checks.inputs(X[None, :] if one else X, None, net.d, "X")
    out = np.empty(X.shape[0])
    _gaussian.evaluate(net._kernel, X, out)
    return float(out[0]) if one else out


def init_gaussian(m: int, d: int, seed, activation: str = "relu", scale: float = 1.0,
                  a_scale: float = 0.0) -> GaussianNetwork:
    """Rows of W uniform on the sphere of radius ``scale``, ``a = a_scale * N(0, 1)``
    entrywise (zero by default, so the network starts at f = 0).

    Draws from the seed's "network" child (docs/maths.rst §4.3): W (m x d normals, each row
    then normalised), then a.
    """
    m, d = _checks.as_count(m, "m", 1), _checks.as_count(d, "d", 1)
    scale = _checks.as_positive(scale, "scale")
    a_scale = _checks.as_finite(a_scale, "a_scale")
    rng = np.random.default_rng(_checks.stream(seed, "network"))
    W = rng.standard_normal((m, d))
    W *= scale / np.linalg.norm(W, axis=1, keepdims=True)
    return GaussianNetwork(a_scale * rng.standard_normal(m + 1), W, activation=activation)
