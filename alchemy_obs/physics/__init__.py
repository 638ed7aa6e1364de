"""Physical formulae, one module per subject, each with units and references.

- :mod:`alchemy_obs.physics.units`: IllustrisTNG code units to physical units.
- :mod:`alchemy_obs.physics.radio`: 21 cm line and radio continuum conversions.
"""
