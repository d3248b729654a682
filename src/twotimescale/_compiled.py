"""The compiled kernels, or an ImportError that says how to build them (no slow fallback)."""
try:
    from . import (_flow, _gaussian, _hessian, _network, _population, _sgd_dense,
                   _sgd_gaussian, _sgd_lockstep, _sgd_sorted)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "twotimescale's compiled kernels (twotimescale._network, _population, _flow, "
        "_hessian, _gaussian, _sgd_dense, _sgd_lockstep, _sgd_sorted, _sgd_gaussian) are "
        "missing. Build them by "
        "installing the package from its source tree: `pip install .` (or `pip install -e .` while "
        "developing); this needs a C compiler and the Python headers. Importing straight "
        "from src/ without installing does not build them."
    ) from exc

__all__ = ["_flow", "_gaussian", "_hessian", "_network", "_population", "_sgd_dense",
           "_sgd_gaussian", "_sgd_lockstep", "_sgd_sorted"]
