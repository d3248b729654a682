"""What the test modules share: the paper's target (Figures 3-5, 7), imported as
``from conftest import PAPER_TARGET``."""
import numpy as np

import twotimescale as tt

#: bias 1, jumps 4, -4, 2, -2, 4 at linspace(0.2, 0.8, 5)
PAPER_TARGET = tt.PiecewiseConstant(np.linspace(0.2, 0.8, 5), np.cumsum([1, 4, -4, 2, -2, 4]))
