"""Experiment files: what to run, as TOML, checked key by key, expanded into runs.

    [target]     breaks, values              (piecewise constant)
                 or activation, a, u, eta    (a teacher network)
    [network]    m, eta, activation, a_scale, d (coordinates: d > 1 is an additive network
                 on [0, 1]^d, m neurons per coordinate, learning the target in every one)
    [dynamics]   method = "sgd" | "gd" | "flow" | "limit", and its keys below
    [sweep]      seeds = 20 (seeds 0..19) or [3, 7, ...]
    [sweep.grid] any [network] or [dynamics] key = [values]: the cartesian product
    [analysis]   certify = true: each finished run polished and certified (endpoints.py),
                 its verdict, polished loss, least Hessian eigenvalue and end |grad| stored

A run is one grid point and one seed; its ``params`` (the resolved sections ``target``,
``network``, ``dynamics``, with defaults filled in and only the keys its method uses) and its
seed are all it depends on, so their hash is its key in the results store.
"""
import hashlib
import itertools
import json
import os
import tomllib
import warnings
from dataclasses import dataclass

import numpy as np

from . import _checks
from .network import AdditiveNetwork, Network, PiecewiseConstant, init_additive, init_network

NETWORK = {"m": None, "eta": None, "activation": "ramp", "a_scale": 0.0, "d": 1}
DYNAMICS = {  # key -> default (None: required by the methods that use it)
    "method": None, "h": None, "eps": None, "t_end": None, "steps": None, "epochs": None,
    "noise": 1.0, "noise_dist": "uniform", "n_records": 100, "n_points": 1000,
    "batch_size": None, "rtol": 1e-6, "atol": 1e-9}
USES = {  # the dynamics keys of each method
    "sgd": ("h", "eps", "t_end", "steps", "noise", "noise_dist", "n_records"),
    "gd": ("h", "eps", "epochs", "n_points", "batch_size", "n_records"),
    "flow": ("eps", "t_end", "rtol", "atol", "n_records"),
    "limit": ("t_end", "rtol", "atol", "n_records"),
}
TARGET_KEYS = ({"breaks", "values"}, {"activation", "a", "u", "eta"})


MAX_NEURONS = 10 ** 7                  # neurons of one network a run may hold


class ExperimentError(ValueError):
    """An experiment that cannot run; the message names the key."""


@dataclass(frozen=True)
class Run:
    """One run of a sweep: resolved parameters, seed, and the key they hash to."""

    params: dict
    seed: int
    key: str


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def by_point(items, params_of):
    """``items`` (runs, stored rows) grouped by grid point, equal params together, in the
    order their points first appear."""
    groups = {}
    for item in items:
        groups.setdefault(canonical(params_of(item)), []).append(item)
    return list(groups.values())


def run_key(params, seed, text=None):
    """The hash of canonical({"params": params, "seed": seed}); ``text``, params' canonical
    JSON if known, saves encoding it again for each seed of a grid point."""
    text = canonical(params) if text is None else text
    return hashlib.sha256(f'{{"params":{text},"seed":{json.dumps(seed)}}}'.encode()).hexdigest()[:32]


def load(source):
    """An experiment from a TOML file path, TOML text, or a dict (whose NumPy arrays and
    numbers become lists and numbers); checked, not yet expanded."""
    try:
        if isinstance(source, dict):
            raw = json.loads(json.dumps(source, default=_plain))
        elif isinstance(source, str) and "\n" in source:
            raw = tomllib.loads(source)
        elif isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                raw = tomllib.load(f)
        else:
            raise ExperimentError("experiment: give a TOML file's path, TOML text or a dict, "
                                  f"not {type(source).__name__}")
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"experiment: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"experiment: {source!s} is not UTF-8 text (TOML must be)") from None
    except OSError as exc:
        raise ExperimentError(f"experiment: cannot read {source!s}: {exc.strerror}") from None
    check(raw)
    return raw


def _plain(value):
    """NumPy arrays and numbers as JSON sees them; anything else is refused."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise ExperimentError(f"experiment: {value!r} ({type(value).__name__}) is not a number, "
                          "a string, a list or a table")


def _unknown(section, keys, allowed):
    extra = sorted(set(keys) - set(allowed))
    if extra:
        raise ExperimentError(f"experiment: unknown key {section}.{extra[0]} "
                              f"(allowed: {', '.join(sorted(allowed))})")


def check(raw):
    """Raise ExperimentError, naming the key, for anything that would not run."""
    if not isinstance(raw, dict):
        raise ExperimentError("experiment: expected a table of sections")
    _unknown("experiment", raw, ("target", "network", "dynamics", "sweep", "analysis"))
    for section in ("target", "network", "dynamics"):
        if not isinstance(raw.get(section), dict):
            raise ExperimentError(f"experiment: missing section [{section}]")
    target = raw["target"]
    if set(target) not in TARGET_KEYS:
        raise ExperimentError("experiment: [target] takes breaks and values (piecewise "
                              f"constant) or activation, a, u and eta; got {sorted(target)}")
    _unknown("network", raw["network"], NETWORK)
    _unknown("dynamics", raw["dynamics"], DYNAMICS)
    analysis = raw.get("analysis", {})
    if not isinstance(analysis, dict):
        raise ExperimentError("experiment: [analysis] must be a table (certify = true)")
    _unknown("analysis", analysis, ("certify",))
    if not isinstance(analysis.get("certify", False), bool):
        raise ExperimentError("experiment: analysis.certify must be true or false, got "
                              f"{analysis['certify']!r}")
    sweep = raw.get("sweep", {})
    _unknown("sweep", sweep, ("seeds", "grid"))
    grid = sweep.get("grid", {})
    if not isinstance(grid, dict):
        raise ExperimentError("experiment: sweep.grid must be a table of key = [values]")
    for key, values in grid.items():
        if key not in NETWORK and key not in DYNAMICS:
            raise ExperimentError(f"experiment: unknown key sweep.grid.{key} (a [network] or "
                                  "[dynamics] key)")
        if not isinstance(values, list) or not values:
            raise ExperimentError(f"experiment: sweep.grid.{key} must be a non-empty list")
    seeds(raw)
    expand(raw)                      # every grid point resolves, and so can run


def seeds(raw):
    value = raw.get("sweep", {}).get("seeds", 1)
    if isinstance(value, bool):
        raise ExperimentError("experiment: sweep.seeds must be a count or a list of seeds")
    if isinstance(value, int):
        if value < 1:
            raise ExperimentError(f"experiment: sweep.seeds must be >= 1, got {value}")
        return list(range(value))
    if (isinstance(value, list) and value
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        if len(set(value)) != len(value):
            raise ExperimentError("experiment: sweep.seeds lists a seed twice")
        return list(value)
    raise ExperimentError("experiment: sweep.seeds must be a count or a list of seeds >= 0")


def _number(section, key, value, positive=True, whole=False):
    """A TOML number checked as the API checks it (``_checks``), or an ExperimentError
    naming ``section.key``. TOML has types, so a string or a boolean is refused here."""
    name = f"{section}.{key}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExperimentError(f"experiment: {name} must be a number, got {value!r}")
    try:
        if whole:
            return _checks.as_count(value, name, 1)
        return (_checks.as_positive if positive else _checks.as_nonnegative)(value, name)
    except ValueError as exc:
        raise ExperimentError(f"experiment: {exc}") from None


def _choice(section, key, value, check):
    """A TOML name checked by ``check`` (a ``_checks`` function), or an ExperimentError."""
    try:
        check(value)
    except ValueError as exc:
        raise ExperimentError(f"experiment: {section}.{exc}") from None
    return value


def _resolve(raw, point):
    """The params of one grid point: defaults in, values checked, unused keys out."""
    network = {**NETWORK, **raw["network"], **{k: v for k, v in point.items() if k in NETWORK}}
    dyn = {**DYNAMICS, **raw["dynamics"], **{k: v for k, v in point.items() if k in DYNAMICS}}
    for key in ("m", "eta"):
        if network[key] is None:
            raise ExperimentError(f"experiment: network.{key} is required")
    _number("network", "m", network["m"], whole=True)
    _number("network", "eta", network["eta"])
    _number("network", "a_scale", network["a_scale"], positive=False)
    _number("network", "d", network["d"], whole=True)
    if network["m"] * network["d"] > MAX_NEURONS:
        raise ExperimentError(f"experiment: network.m x network.d = {network['m'] * network['d']} "
                              f"neurons; at most {MAX_NEURONS:.0e} fit a run")
    _choice("network", "activation", network["activation"], _checks.activation_code)
    if network["activation"] == "heaviside":
        raise ExperimentError("experiment: network.activation must be ramp, smoothstep or "
                              "relu: a heaviside network has no gradient in u")
    method = dyn["method"]
    if method not in USES:
        raise ExperimentError(f"experiment: dynamics.method must be one of {', '.join(USES)}, "
                              f"got {method!r}")
    dynamics = {"method": method, **{k: dyn[k] for k in USES[method]}}
    for key, value in dynamics.items():
        if key in ("method", "noise_dist") or value is None:
            continue
        whole = key in ("steps", "epochs", "n_records", "n_points", "batch_size")
        _number("dynamics", key, value, positive=key != "noise", whole=whole)
    if "noise_dist" in dynamics:
        _choice("dynamics", "noise_dist", dynamics["noise_dist"], _checks.noise_code)
    required = {"sgd": ("h", "eps"), "gd": ("h", "eps", "epochs"), "flow": ("eps", "t_end"),
                "limit": ("t_end",)}[method]
    for key in required:
        if dynamics[key] is None:
            raise ExperimentError(f"experiment: dynamics.{key} is required by method {method!r}")
    if network["d"] > 1 and method in ("flow", "limit"):
        raise ExperimentError(f"experiment: method {method!r} is for univariate networks; "
                              "network.d > 1 trains with sgd or gd")
    if method == "sgd" and (dynamics["t_end"] is None) == (dynamics["steps"] is None):
        raise ExperimentError("experiment: method 'sgd' needs exactly one of dynamics.t_end "
                              "and dynamics.steps")
    _sizes(network, dynamics)
    target = dict(raw["target"])
    try:
        make_target(target)
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"experiment: target: {exc}") from None
    params = {"target": target, "network": network, "dynamics": dynamics}
    if raw.get("analysis", {}).get("certify"):       # only then: other keys stay as they were
        params["analysis"] = {"certify": True}
    return params


def _sizes(network, dynamics):
    """Refuse, before any run, a step count or records that no run could hold."""
    try:
        if method_steps := dynamics.get("steps") or dynamics.get("epochs"):
            _checks.steps(1.0, 1.0, None, method_steps)
        elif dynamics["method"] == "sgd":
            _checks.steps(dynamics["h"], dynamics["eps"], dynamics["t_end"], None)
        width = 2 * network["m"] * network["d"] + 1
        _checks.record_steps(_checks.MAX_STEPS, dynamics["n_records"], width)
    except ValueError as exc:
        raise ExperimentError(f"experiment: dynamics: {exc}") from None


def make_target(target, d=1):
    """The target of resolved params: a PiecewiseConstant or a teacher Network; for d > 1
    the additive network that is that function in each of the d coordinates."""
    if "breaks" in target:
        one = PiecewiseConstant(target["breaks"], target["values"])
    else:
        one = Network(target["a"], target["u"], eta=target["eta"], activation=target["activation"])
    if d == 1:
        return one
    return AdditiveNetwork(d * one.a[0], np.tile(one.a[1:], (d, 1)), np.tile(one.u, (d, 1)),
                           eta=one.eta, activation=one.activation)


def make_network(network, seed):
    """The starting network of resolved params and a seed (additive when d > 1)."""
    kwargs = dict(eta=network["eta"], activation=network["activation"], a_scale=network["a_scale"])
    if network["d"] == 1:
        return init_network(network["m"], seed, **kwargs)
    return init_additive(network["d"], network["m"], seed, **kwargs)


def expand(raw):
    """Every run of the experiment: grid points in order, seeds within each. A key that no
    grid point's method uses is an error; grid points that differ only in a key their method
    ignores are one run, with a warning that says how many runs remain."""
    grid = raw.get("sweep", {}).get("grid", {})
    keys = list(grid)
    every_seed = seeds(raw)
    points = [_resolve(raw, dict(zip(keys, values)))
              for values in itertools.product(*(grid[k] for k in keys))]
    used = {key for params in points for key in USES[params["dynamics"]["method"]]}
    given = set(raw["dynamics"]) | {key for key in grid if key in DYNAMICS}
    for key in sorted(given - used - {"method"}):
        methods = sorted({params["dynamics"]["method"] for params in points})
        raise ExperimentError(f"experiment: dynamics.{key} is not used by method "
                              f"{' or '.join(map(repr, methods))} (it uses: "
                              f"{', '.join(sorted(set().union(*(USES[m] for m in methods))))})")
    distinct = {canonical(params): params for params in points}
    if len(distinct) < len(points):
        warnings.warn(f"experiment: {len(points)} grid points resolve to {len(distinct)} distinct "
                      f"ones (a grid key their method does not use): {len(distinct)} x "
                      f"{len(every_seed)} seeds = {len(distinct) * len(every_seed)} runs",
                      UserWarning, stacklevel=3)
    return [Run(params, s, run_key(params, s, text)) for text, params in distinct.items()
            for s in every_seed]
