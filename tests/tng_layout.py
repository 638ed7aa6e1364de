"""The IllustrisTNG cutout layout used by alchemy-obs, as a table for tests.

Derived from the public TNG data specification
(https://www.tng-project.org/data/docs/specifications/, section "Snapshots"), restricted to
the header attributes and particle fields that alchemy-obs reads. Dtypes are those of the
TNG HDF5 files: AREPO was compiled with ``OUTPUT_COORDINATES_IN_DOUBLEPRECISION`` (so
``Coordinates`` are float64), other particle fields are single precision, ``ParticleIDs``
are 64-bit unsigned (``LONGIDS``); header scalars are float64, particle counts int32
(``NumPart_ThisFile``) and uint32 (``NumPart_Total``, ``NumPart_Total_HighWord``).

Shapes use ``N`` for the particle count of the group and ``()`` for scalars.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

#: (attribute, dtype, shape) of the ``Header`` group.
HEADER: list[tuple[str, str, tuple]] = [
    ("BoxSize", "float64", ()),
    ("HubbleParam", "float64", ()),
    ("Omega0", "float64", ()),
    ("OmegaLambda", "float64", ()),
    ("OmegaBaryon", "float64", ()),
    ("Time", "float64", ()),
    ("Redshift", "float64", ()),
    ("MassTable", "float64", (6,)),
    ("NumPart_ThisFile", "int32", (6,)),
    ("NumPart_Total", "uint32", (6,)),
    ("NumPart_Total_HighWord", "uint32", (6,)),
    ("NumFilesPerSnapshot", "int32", ()),
    ("UnitLength_in_cm", "float64", ()),
    ("UnitMass_in_g", "float64", ()),
    ("UnitVelocity_in_cm_per_s", "float64", ()),
]

#: (group, field, dtype, shape) of the particle data; units are TNG code units.
FIELDS: list[tuple[str, str, str, tuple]] = [
    # gas cells
    ("PartType0", "Coordinates", "float64", ("N", 3)),  # ckpc/h
    ("PartType0", "Density", "float32", ("N",)),  # (1e10 Msun/h)/(ckpc/h)^3
    ("PartType0", "ElectronAbundance", "float32", ("N",)),  # n_e/n_H
    ("PartType0", "GFM_Metallicity", "float32", ("N",)),  # M_Z/M
    ("PartType0", "GFM_Metals", "float32", ("N", 10)),  # H He C N O Ne Mg Si Fe other
    ("PartType0", "InternalEnergy", "float32", ("N",)),  # (km/s)^2
    ("PartType0", "MagneticField", "float32", ("N", 3)),  # (h/a^2) UnitPressure^(1/2)
    ("PartType0", "Masses", "float32", ("N",)),  # 1e10 Msun/h
    ("PartType0", "NeutralHydrogenAbundance", "float32", ("N",)),  # n_HI/n_H
    ("PartType0", "ParticleIDs", "uint64", ("N",)),
    ("PartType0", "StarFormationRate", "float32", ("N",)),  # Msun/yr
    ("PartType0", "Velocities", "float32", ("N", 3)),  # km sqrt(a)/s
    # dark matter: no Masses, MassTable[1] instead
    ("PartType1", "Coordinates", "float64", ("N", 3)),
    ("PartType1", "ParticleIDs", "uint64", ("N",)),
    ("PartType1", "SubfindHsml", "float32", ("N",)),  # ckpc/h
    ("PartType1", "Velocities", "float32", ("N", 3)),
    # stars and wind particles
    ("PartType4", "Coordinates", "float64", ("N", 3)),
    ("PartType4", "GFM_Metallicity", "float32", ("N",)),
    ("PartType4", "GFM_StellarFormationTime", "float32", ("N",)),  # scale factor; <= 0: wind
    ("PartType4", "Masses", "float32", ("N",)),
    ("PartType4", "ParticleIDs", "uint64", ("N",)),
    ("PartType4", "SubfindHsml", "float32", ("N",)),
    ("PartType4", "Velocities", "float32", ("N", 3)),
    # black holes
    ("PartType5", "BH_Mass", "float32", ("N",)),  # 1e10 Msun/h
    ("PartType5", "Coordinates", "float64", ("N", 3)),
    ("PartType5", "Masses", "float32", ("N",)),
    ("PartType5", "ParticleIDs", "uint64", ("N",)),
    ("PartType5", "Velocities", "float32", ("N", 3)),
]


def resolve_shape(shape: tuple, n: int) -> tuple[int, ...]:
    """The concrete shape of a table entry for ``n`` particles."""
    return tuple(n if s == "N" else s for s in shape)


def write_layout_file(
    path: Path,
    counts: dict[int, int],
    *,
    box_size: float = 35000.0,
    a: float = 1.0,
    h: float = 0.6774,
    centre: np.ndarray | None = None,
    seed: int = 0,
) -> Path:
    """Write a file that follows the table exactly, independently of the synthetic writer.

    Particles sit in a 30 ckpc/h cube around ``centre`` (box coordinates, wrapped), with
    plausible code-unit values, so that the reader can be tested against the specification
    rather than against our own generator.
    """
    rng = np.random.default_rng(seed)
    centre = np.full(3, box_size / 2) if centre is None else np.asarray(centre, float)
    numpart = np.zeros(6, dtype=np.int64)
    for t, n in counts.items():
        numpart[t] = n
    header_values = {
        "BoxSize": box_size, "HubbleParam": h, "Omega0": 0.3089, "OmegaLambda": 0.6911,
        "OmegaBaryon": 0.0486, "Time": a, "Redshift": 1 / a - 1,
        "MassTable": np.array([0, 5e-4, 0, 0, 0, 0]), "NumPart_ThisFile": numpart,
        "NumPart_Total": numpart, "NumPart_Total_HighWord": np.zeros(6),
        "NumFilesPerSnapshot": 1, "UnitLength_in_cm": 3.085678e21, "UnitMass_in_g": 1.989e43,
        "UnitVelocity_in_cm_per_s": 1e5,
    }
    with h5py.File(path, "w") as f:
        hdr = f.create_group("Header")
        for name, dtype, shape in HEADER:
            hdr.attrs[name] = np.asarray(header_values[name], dtype=dtype).reshape(shape)
        for group, field, dtype, shape in FIELDS:
            t = int(group[-1])
            n = counts.get(t, 0)
            if n == 0:
                continue
            full = resolve_shape(shape, n)
            if field == "Coordinates":
                data = np.mod(centre + rng.uniform(-15, 15, full), box_size)
            elif field == "ParticleIDs":
                data = np.arange(n) + 1000 * t
            elif field == "GFM_Metals":
                data = np.tile([0.75, 0.24] + [0.001] * 8, (n, 1))
            elif field == "GFM_StellarFormationTime":
                data = rng.uniform(0.1, a, n)
            elif field in ("Velocities", "MagneticField"):
                data = rng.normal(0, 1, full)
            else:
                data = rng.uniform(1e-4, 1e-3, full)
            f.require_group(group).create_dataset(field, data=np.asarray(data, dtype=dtype))
    return path
