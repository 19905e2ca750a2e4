"""metafast-wavelets: wavelet basis families for metafast (an example plugin, numpy only).

Installed, it registers two families through the ``metafast`` entry point ``wavelets``:

    import metafast as mf
    B = mf.basis.make("mexican-hat", n_basis=31, width=0.5)
    B = mf.basis.make("morlet", n_basis=31, omega0=5.0)
"""

from __future__ import annotations

import metafast
from metafast_wavelets._families import MexicanHat, Morlet, dyadic_grid

__version__ = "0.1.0"
__all__ = ["MexicanHat", "Morlet", "dyadic_grid", "metafast_basis_families", "metafast_model_types"]


@metafast.hookimpl
def metafast_basis_families(register):
    register("mexican-hat", MexicanHat)
    register("morlet", Morlet)


@metafast.hookimpl
def metafast_model_types(register):
    """Model files may rebuild both families (their state is arrays and numbers)."""
    register("metafast_wavelets.MexicanHat", MexicanHat)
    register("metafast_wavelets.Morlet", Morlet)
