"""Where particles come from: TNG-layout cutouts (synthetic, web API, local snapshots).

The common currency is :class:`alchemy_obs.sim.galaxy.Galaxy`, built by
:func:`alchemy_obs.sim.galaxy.load_galaxy` from any file in the TNG cutout layout.
"""
