"""Projected maps of the physical domains of a galaxy.

- :mod:`alchemy_obs.maps.kernels`: SPH kernels, their projections and integration tables.
- :mod:`alchemy_obs.maps.deposit`: the pixel-integrated kernel deposit (numba) of maps and cubes.
- :mod:`alchemy_obs.maps.project`: mass-conserving pixel-integrated projection.
- :mod:`alchemy_obs.maps.smoothing`: smoothing lengths of gas cells, dark matter and stars.
"""
