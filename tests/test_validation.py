"""Bad input raises a ValueError that names the argument and says what is wrong."""
import subprocess
import sys

import numpy as np
import pytest

import twotimescale as tt


@pytest.mark.parametrize("kwargs, words", [
    (dict(a=[0, 1, 2], u=[0.5], eta=0.1), ["a must have shape (m+1,) = (2,)"]),
    (dict(a=[0, 1], u=[[0.5]], eta=0.1), ["u must be one-dimensional"]),
    (dict(a=[0, np.nan], u=[0.5], eta=0.1), ["a must be finite", "index 1"]),
    (dict(a=[0, 1], u=[np.inf], eta=0.1), ["u must be finite"]),
    (dict(a=[0, 1], u=[0.5], eta=0.0), ["eta must be finite and > 0"]),
    (dict(a=[0, 1], u=[0.5], eta=-1), ["eta must be finite and > 0"]),
    (dict(a=[0, 1], u=[0.5], eta=np.nan), ["eta must be finite and > 0"]),
    (dict(a=[0, 1], u=[0.5], eta="wide"), ["eta must be a positive number"]),
    (dict(a=[0, 1], u=[0.5], eta=0.1, activation="tanh"), ["activation must be one of", "tanh"]),
    (dict(a=["x", 1], u=[0.5], eta=0.1), ["a must be an array of numbers"]),
])
def test_network_rejects(kwargs, words):
    with pytest.raises(ValueError) as err:
        tt.Network(**kwargs)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("breaks, values, words", [
    ([0.5, 0.3], [0, 1, 2], "strictly increasing"),
    ([0.5, 0.5], [0, 1, 2], "strictly increasing"),
    ([0.0, 0.5], [0, 1, 2], "inside (0, 1)"),
    ([0.5, 1.0], [0, 1, 2], "inside (0, 1)"),
    ([0.5], [0, 1, 2], "values must have one entry per piece"),
    ([0.5], [0, np.nan], "values must be finite"),
])
def test_piecewise_constant_rejects(breaks, values, words):
    with pytest.raises(ValueError) as err:
        tt.PiecewiseConstant(breaks, values)
    assert words in str(err.value)


@pytest.mark.parametrize("m", [0, -3, 2.5, True])
def test_init_network_rejects_m(m):
    with pytest.raises(ValueError, match="m must be a whole number"):
        tt.init_network(m, seed=0, eta=0.1)


def test_gradient_of_a_heaviside_network_is_refused():
    net = tt.Network([0, 1], [0.5], eta=0.1, activation="heaviside")
    with pytest.raises(ValueError, match="heaviside"):
        tt.population_grad(net, tt.PiecewiseConstant([0.5], [0, 1]))


def test_evaluation_rejects_nan():
    with pytest.raises(ValueError, match="x must be finite"):
        tt.Network([0, 1], [0.5], eta=0.1)(np.array([0.1, np.nan]))


def test_population_functions_want_networks():
    with pytest.raises(TypeError, match="target must be a twotimescale.Network"):
        tt.population_loss(tt.init_network(3, 0, eta=0.1), lambda x: x)


def test_arrays_are_read_only_copies():
    a = np.array([0.0, 1.0])
    net = tt.Network(a, [0.5], eta=0.1)
    a[1] = 7.0
    assert net.a[1] == 1.0
    with pytest.raises(ValueError):
        net.a[0] = 3.0


def test_missing_extension_says_how_to_build_it():
    code = ("import sys; sys.modules['twotimescale._population'] = None\n"
            "import twotimescale")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "pip install ." in proc.stderr and "compiled kernels" in proc.stderr


def test_core_imports_and_runs_with_numpy_alone(tmp_path):
    """The optional extras stay optional: no matplotlib, tqdm, distributed or scipy."""
    code = ("import sys\n"
            "for name in ('matplotlib', 'tqdm', 'distributed', 'dask', 'scipy'):\n"
            "    sys.modules[name] = None\n"
            "import numpy as np, twotimescale as tt\n"
            "t = tt.PiecewiseConstant([0.5], [0, 1])\n"
            "net = tt.init_network(4, 0, eta=0.1)\n"
            "tt.sgd(net, t, h=1e-3, eps=0.1, steps=100)\n"
            "tt.flow(net, t, eps=0.1, t_end=0.01)\n"
            "exp = {'target': {'breaks': [0.5], 'values': [0, 1]},\n"
            "       'network': {'m': 3, 'eta': 0.1}, 'dynamics': {'method': 'sgd', 'h': 1e-3,\n"
            "       'eps': 0.1, 'steps': 100}}\n"
            f"print(tt.sweep(exp, store={str(tmp_path / 's.sqlite')!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "'ran': 1" in proc.stdout


def test_ci_runs_the_readme_test_command():
    """The README contract: .ci/run runs exactly the test command the README gives."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    command = [line for line in (root / ".ci" / "run").read_text().splitlines()
               if "pytest" in line]
    assert len(command) == 1 and command[0].strip() in (root / "README.md").read_text()


def test_networks_are_immutable_and_the_kernels_hold_their_own_copies():
    net = tt.Network([0.0, 1.0], [0.5], eta=0.1)
    for name, value in (("u", np.linspace(0, 1, 200_000)), ("eta", -1.0), ("a", [1.0])):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(net, name, value)
    with pytest.raises(ValueError):
        net.u[0] = 0.9                      # the arrays are read-only
    additive = tt.init_additive(2, 3, 0, eta=0.1)
    with pytest.raises(AttributeError, match="immutable"):
        additive.a0 = 5.0


def test_sgd_kernel_choice_is_checked():
    target = tt.PiecewiseConstant([0.5], [0.0, 1.0])
    relu = tt.init_network(5, 0, eta=0.1, activation="relu")
    with pytest.raises(ValueError, match="kernel='sorted' is for univariate ramp"):
        tt.sgd(relu, target, h=1e-3, eps=0.1, steps=10, kernel="sorted")
    with pytest.raises(ValueError, match="kernel must be one of"):
        tt.sgd(relu, target, h=1e-3, eps=0.1, steps=10, kernel="fast")


def test_an_additive_network_without_neurons_is_refused():
    with pytest.raises(ValueError, match="m >= 1"):
        tt.AdditiveNetwork(0.0, np.zeros((2, 0)), np.zeros((2, 0)), eta=0.1)
