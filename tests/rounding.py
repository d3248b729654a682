"""How far two correct float64 codes may differ: the rounding-error models behind the twin
tests' tolerances, in one place, each with its reason.

* ``term_size``/``residual_scale``: a sum of terms rounds to about eps times the sum of their
  sizes, so a kernel and its NumPy twin, summing the same terms in other orders, agree to
  that scale (a ReLU's terms reach (1 + |u|) / eta on [0, 1]).
* ``contracting_step``: one SGD step multiplies a deviation of a along phi(x) by
  1 - 2 h |phi(x)|^2; past 1 in size the run amplifies each step's rounding, and no two codes
  agree to any fixed tolerance (60 ReLUs of width 1e-3 at h = 1e-6 give 2 h |phi|^2 = 87:
  weights of 1e24 after 60 steps, and a one-ulp nudge of the start moves the result by
  8e-12). So the twin tests take h no larger than keeps that factor at most 1 in size.
* ``solves_well_posed``: an implicit flow stage solves with I + c G, or (eps = 0) takes the
  minimum-norm a*(u); two codes agree to 1e-9 there only when cond(I + c G) <= 1e6, or every
  eigenvalue of G is either far above both codes' rank cut-offs (> 1e-6 |G|) or far below
  them (numpy's lstsq cuts at n eps |G|, the kernel a little higher).
"""
import numpy as np

import twotimescale as tt
from twotimescale import reference as ref


def term_size(net):
    """The size of the terms of f: sum |a| (times the largest ReLU value on [0, 1])."""
    top = (1 + np.abs(net.u).max(initial=0)) / net.eta if net.activation == "relu" else 1.0
    bias = abs(net.a0) if isinstance(net, tt.AdditiveNetwork) else 0.0
    return bias + np.abs(net.a).sum() * top


def residual_scale(net, target):
    """The scale of f - f*: the rounding of any sum of its terms is eps times this."""
    return 1 + term_size(net) + term_size(target)


def contracting_step(net, x, h_max=1e-6):
    """The largest h <= h_max for which no sample of x makes an SGD step amplify a
    deviation of a: 2 h |phi(x)|^2 <= 1."""
    return min(h_max, 0.5 / (ref.features(net, x) ** 2).sum(axis=0).max())


def solves_well_posed(net, solves, eps, dt):
    """ARS's solves, at the stage positions ``solves`` ((u_i, G_i) from the twin), are well
    conditioned for both codes, each deciding the rank on its own G: the twin's by
    quadrature, the kernel's from closed forms, whose rounding (n eps |G| and more) can lift
    a null eigenvalue."""
    for u_i, twin_G in solves:
        for G in (twin_G, tt.gram(net.replace(u=u_i))):
            lam = np.linalg.eigvalsh(G)
            top = lam[-1]
            zero = 0.1 * G.shape[0] * np.finfo(float).eps * top
            if eps == 0 and not np.all((np.abs(lam) < zero) | (lam > 1e-6 * top)):
                return False
            if eps > 0 and dt / eps * top > 1e6:
                return False
    return True
