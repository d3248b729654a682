"""What the test modules share: the paper's target and a teacher network (import them with
``from conftest import PAPER_TARGET, RELU_TEACHER``), and fixtures for them."""
import numpy as np
import pytest

import twotimescale as tt

#: the paper's target (Figures 3-5, 7): bias 1, jumps 4, -4, 2, -2, 4 at linspace(0.2, 0.8, 5)
PAPER_TARGET = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))
#: the paper's ReLU teacher (its appendix): weights 1, -2, 3 at 0.3, 0.5, 0.7, no bias
RELU_TEACHER = tt.Network([0.0, 1.0, -2.0, 3.0], [0.3, 0.5, 0.7], eta=1.0, activation="relu")


@pytest.fixture(scope="session")
def paper_target():
    return PAPER_TARGET


@pytest.fixture(scope="session")
def relu_teacher():
    return RELU_TEACHER
