"""Checks of predicted dark-matter maps against the galaxy's own dynamics.

* :mod:`~alchemy_obs.dynamics.rotmod`: rotation curves with their baryonic mass models
  (SPARC ``*_rotmod.dat`` files and CSV tables).
* :mod:`~alchemy_obs.dynamics.haloes`: NFW, Burkert and pseudo-isothermal haloes: rotation
  curves, enclosed and projected masses through a finite line of sight.
* :mod:`~alchemy_obs.dynamics.fit`: least-squares halo fits to the dark-matter rotation curve.
* :mod:`~alchemy_obs.dynamics.check`: the predicted map's mass inside cylinders against the
  fitted haloes', as a table and a figure (``alchemy-obs dynamics-check``).
"""

from alchemy_obs.dynamics.check import (
    DynamicsCheck,
    MassMap,
    dynamics_check,
    map_enclosed_mass,
    plot_check,
    read_mass_map,
    write_table,
)
from alchemy_obs.dynamics.fit import HaloFit, fit_halo
from alchemy_obs.dynamics.haloes import HALO_MODELS, NFW, Burkert, Halo, PseudoIsothermal
from alchemy_obs.dynamics.rotmod import (
    DynamicsError,
    RotationCurve,
    read_rotation_curve,
    read_rotation_csv,
    read_sparc_rotmod,
)

__all__ = [
    "DynamicsCheck", "MassMap", "dynamics_check", "map_enclosed_mass", "plot_check",
    "read_mass_map", "write_table", "HaloFit", "fit_halo", "HALO_MODELS", "NFW", "Burkert",
    "Halo", "PseudoIsothermal", "DynamicsError", "RotationCurve", "read_rotation_curve",
    "read_rotation_csv", "read_sparc_rotmod",
]
