"""Viewing geometry: rotations, face-on and edge-on orientations, field of view and pixels.

Conventions
-----------
A view is a proper rotation matrix ``R`` (3x3, orthonormal, det +1) applied to galaxy-centred
coordinates as ``x' = R @ x`` (rows of ``R`` are the image axes expressed in the simulation
frame). The map plane is ``(x', y')`` and the line of sight is ``z'``; the observer sits at
``z' = +inf`` looking towards ``-z'``, so a positive line-of-sight field component points
towards the observer (the sign convention of a positive Faraday rotation measure). All
domains of one view are projected with the same matrix.

Random views are drawn from the Haar (uniform) measure on SO(3) by normalising a 4-vector of
standard normal deviates into a unit quaternion (Shoemake 1992). Uniform Euler angles, used
by some published map generators, over-sample the poles and are therefore not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np

__all__ = [
    "View",
    "random_rotations",
    "face_on_matrix",
    "edge_on_matrix",
    "galaxy_views",
    "enclosing_radius",
    "hi_radius",
    "field_of_view",
    "fixed_field_of_view",
    "map_extent",
]


@dataclass(frozen=True)
class View:
    """One orientation of a galaxy.

    Attributes
    ----------
    name : str
        ``"random<k>"``, ``"faceon"`` or ``"edgeon"``.
    matrix : numpy.ndarray
        (3, 3) proper rotation, ``x_view = matrix @ x_sim``.
    """

    name: str
    matrix: np.ndarray


def _quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def random_rotations(n: int, rng: np.random.Generator | int | tuple[int, ...]) -> np.ndarray:
    """Draw rotation matrices uniformly (Haar measure) from SO(3).

    Parameters
    ----------
    n : int
        Number of rotations.
    rng : numpy.random.Generator or int or tuple of int
        A generator, or a seed (sequence) passed to :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.ndarray
        (n, 3, 3) float64 proper rotation matrices.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return _quaternion_to_matrix(q)


def _unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"cannot orient a view along the zero or non-finite vector {v}")
    return v / norm


def _perpendicular(axis: np.ndarray) -> np.ndarray:
    # The simulation axis least aligned with ``axis`` gives a well-conditioned, deterministic
    # in-plane direction.
    trial = np.eye(3)[np.argmin(np.abs(axis))]
    e = trial - trial.dot(axis) * axis
    return e / np.linalg.norm(e)


def face_on_matrix(angular_momentum: np.ndarray) -> np.ndarray:
    """Rotation that puts the angular momentum along the line of sight (``+z'``).

    Parameters
    ----------
    angular_momentum : array_like
        (3,) vector in the simulation frame (any normalisation).

    Returns
    -------
    numpy.ndarray
        (3, 3) proper rotation ``R`` with ``R @ L / |L| = (0, 0, 1)``.
    """
    axis = _unit(angular_momentum)
    e1 = _perpendicular(axis)
    return np.stack([e1, np.cross(axis, e1), axis])


def edge_on_matrix(angular_momentum: np.ndarray) -> np.ndarray:
    """Rotation that puts the angular momentum along the image's vertical axis (``+y'``).

    The disc then lies along ``x'`` and the line of sight ``z'`` is in the disc plane.

    Parameters
    ----------
    angular_momentum : array_like
        (3,) vector in the simulation frame.

    Returns
    -------
    numpy.ndarray
        (3, 3) proper rotation ``R`` with ``R @ L / |L| = (0, 1, 0)``.
    """
    axis = _unit(angular_momentum)
    e1 = _perpendicular(axis)
    return np.stack([e1, axis, np.cross(e1, axis)])


def galaxy_views(
    angular_momentum: np.ndarray | None,
    galaxy_id: int,
    *,
    n_random: int = 1,
    face_on: bool = True,
    edge_on: bool = True,
    seed: int = 0,
) -> list[View]:
    """The views of one galaxy: random rotations, then face-on and edge-on.

    Parameters
    ----------
    angular_momentum : array_like or None
        Stellar angular momentum (3,); required when ``face_on`` or ``edge_on``.
    galaxy_id : int
        Galaxy identifier; the random rotations of galaxy ``g`` are drawn from the generator
        seeded by ``(seed, g)``, so they do not depend on which other galaxies are processed
        or in which order.
    n_random : int
        Number of uniformly random views, named ``random0``, ``random1``, ...
    face_on, edge_on : bool
        Whether to add the ``faceon`` and ``edgeon`` views.
    seed : int
        Base seed.

    Returns
    -------
    list of View
    """
    if galaxy_id < 0:
        raise ValueError(f"galaxy_id must be >= 0 to seed its rotations, got {galaxy_id}")
    views = [
        View(f"random{k}", m)
        for k, m in enumerate(random_rotations(n_random, (seed, galaxy_id)))
    ]
    if (face_on or edge_on) and angular_momentum is None:
        raise ValueError("face-on and edge-on views need the stellar angular momentum")
    if face_on:
        views.append(View("faceon", face_on_matrix(angular_momentum)))
    if edge_on:
        views.append(View("edgeon", edge_on_matrix(angular_momentum)))
    return views


def enclosing_radius(radii: u.Quantity, weights: np.ndarray, fraction: float) -> u.Quantity:
    """Radius within which ``fraction`` of the total weight lies.

    Parameters
    ----------
    radii : Quantity, shape (N,)
        Distances from the centre (a length).
    weights : ndarray, shape (N,)
        Non-negative weights (masses).
    fraction : float
        Enclosed fraction, in (0, 1].

    Returns
    -------
    Quantity
        kpc: the radius of the first particle (in order of radius) at which the cumulative
        weight reaches ``fraction``, so at most ``1 - fraction`` of the weight lies strictly
        beyond it; zero when the weights sum to zero.
    """
    r = u.Quantity(radii, u.kpc).value
    w = np.asarray(weights, np.float64)
    if r.shape != w.shape or r.ndim != 1:
        raise ValueError(f"radii {r.shape} and weights {w.shape} must be equal 1-D arrays")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    if w.sum() <= 0:
        return 0.0 * u.kpc
    order = np.argsort(r, kind="stable")
    cumulative = np.cumsum(w[order])
    # No interpolation below that particle: it would leave more than 1 - fraction beyond the
    # radius when the weight there sits in one heavy particle.
    k = min(int(np.searchsorted(cumulative, fraction * cumulative[-1])), len(r) - 1)
    return float(r[order][k]) * u.kpc


def hi_radius(
    radii: u.Quantity,
    hi_masses: u.Quantity,
    *,
    threshold: u.Quantity = 1.0 * u.Msun / u.pc**2,
    bin_width: u.Quantity = 0.5 * u.kpc,
    max_gap: u.Quantity = 1.0 * u.kpc,
) -> u.Quantity:
    """HI radius :math:`R_{\\rm HI}`: where the face-on azimuthally averaged
    :math:`\\Sigma_{\\rm HI}` falls to ``threshold``.

    The definition of Broeils & Rhee (1997, A&A 324, 877) and Wang et al. (2016, MNRAS 460,
    2143), whose :math:`D_{\\rm HI}`-:math:`M_{\\rm HI}` relation it allows to check.
    The profile is the HI mass in annuli of ``bin_width`` divided by their area;
    :math:`R_{\\rm HI}` is the outer edge of the run of annuli at or above the threshold
    that holds the most HI mass (the disc), where gaps below it no longer than ``max_gap``
    (particle noise, arms) do not end a run: a central HI hole is crossed, while a lighter
    companion or detached ring farther out does not count.

    Parameters
    ----------
    radii : Quantity, shape (N,)
        Cylindrical radii of the gas cells in the disc plane (the face-on view).
    hi_masses : Quantity, shape (N,)
        HI mass of each cell.
    threshold : Quantity
        Surface density defining the edge (default 1 Msun/pc^2).
    bin_width : Quantity
        Width of the annuli.
    max_gap : Quantity
        Longest stretch of annuli below the threshold inside the disc.

    Returns
    -------
    Quantity
        kpc; zero when no annulus reaches the threshold.
    """
    r = u.Quantity(radii, u.kpc).value
    m = u.Quantity(hi_masses, u.Msun).value
    width = u.Quantity(bin_width, u.kpc).value
    if r.shape != m.shape or r.ndim != 1:
        raise ValueError(f"radii {r.shape} and HI masses {m.shape} must be equal 1-D arrays")
    if not width > 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    if r.size == 0:
        return 0.0 * u.kpc
    edges = width * np.arange(int(np.floor(r.max() / width)) + 2)
    mass, _ = np.histogram(r, edges, weights=m)
    sigma = mass / (np.pi * np.diff(edges**2)) * (u.Msun / u.kpc**2)
    above = np.flatnonzero(sigma >= threshold)
    if above.size == 0:
        return 0.0 * u.kpc
    gap = int(np.floor(u.Quantity(max_gap, u.kpc).value / width + 1e-9))
    breaks = np.flatnonzero(np.diff(above) > gap + 1)
    first = above[np.concatenate([[0], breaks + 1])]  # first annulus of each run
    last = above[np.concatenate([breaks, [above.size - 1]])]  # last annulus of each run
    cumulative = np.concatenate([[0.0], np.cumsum(mass)])
    disc = int(np.argmax(cumulative[last + 1] - cumulative[first]))
    return float(edges[last[disc] + 1]) * u.kpc


def field_of_view(
    hi_extent: u.Quantity,
    stellar_half_mass_radius: u.Quantity,
    *,
    stellar_multiple: float = 3.0,
) -> u.Quantity:
    """Side of a square field sized on the galaxy's HI and stellar discs.

    The half-side is the larger of ``hi_extent`` and ``stellar_multiple`` stellar
    half-mass radii. With ``hi_extent`` the 3D radius enclosing a fraction :math:`f` of the
    HI mass (:func:`enclosing_radius`), at least :math:`f` of the HI lies in the map in
    every view: a projected position is never farther from the centre than the 3D one, and
    the square holds the circle of its half-side. The stellar term sizes gas-poor galaxies.

    Parameters
    ----------
    hi_extent : Quantity
        HI radius to enclose (a length; may be zero for a galaxy without HI).
    stellar_half_mass_radius : Quantity
        3D stellar half-mass radius (zero for a galaxy without stars).
    stellar_multiple : float
        Minimum half-side in stellar half-mass radii.

    Returns
    -------
    Quantity
        Side length in kpc.
    """
    half = max(u.Quantity(hi_extent, u.kpc),
               stellar_multiple * u.Quantity(stellar_half_mass_radius, u.kpc))
    fov = 2 * half
    if not np.isfinite(fov.value) or fov.value <= 0:
        raise ValueError(f"field of view must be a positive length, got {fov} (no HI and "
                         "no stars?)")
    return fov


def fixed_field_of_view(npix: int, pixel: u.Quantity) -> u.Quantity:
    """Side of a field of ``npix`` pixels of physical size ``pixel``: ``npix * pixel`` (kpc)."""
    fov = npix * u.Quantity(pixel, u.kpc)
    if npix < 1 or not np.isfinite(fov.value) or fov.value <= 0:
        raise ValueError(f"need npix >= 1 and a positive pixel size, got {npix}, {pixel}")
    return fov


def map_extent(fov: u.Quantity) -> u.Quantity:
    """Extent ``(xmin, xmax, ymin, ymax)`` of a map of side ``fov`` centred on the galaxy."""
    half = 0.5 * u.Quantity(fov, u.kpc)
    return u.Quantity([-half, half, -half, half])
