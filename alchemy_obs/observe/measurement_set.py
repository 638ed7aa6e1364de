"""MeasurementSet (v2) writer and reader for simulated visibilities (python-casacore).

The MAIN table gets one row per baseline and dump with ``DATA`` (nchan, 2) holding the
Stokes I visibility in both parallel hands (XX = YY = I, so that any imager's Stokes I,
(XX + YY)/2, is the simulated visibility), ``FLAG``, ``WEIGHT``/``SIGMA`` per correlation
(``SIGMA = sqrt(2) sigma_I``: the two hands written as independent would average back to
sigma_I), ``UVW`` in metres, ``TIME``/``TIME_CENTROID`` (MJD seconds, UTC), ``INTERVAL``,
``EXPOSURE``. Subtables filled: ANTENNA (ITRF positions, dish diameters), SPECTRAL_WINDOW
(TOPO channels), POLARIZATION (XX, YY), FIELD (phase centre, J2000), DATA_DESCRIPTION,
OBSERVATION (telescope name, time range), FEED (two linear receptors) and STATE -- what
WSClean reads. The MS is written into a temporary folder beside the target and renamed.

Sign convention: ``UVW`` is ``uvw(antenna2) - uvw(antenna1)`` as in the engine, but a
MeasurementSet visibility is ``V_pq = <E_p E_q^*>``, which for that baseline vector carries
``exp(+2 pi i (u l + v m + w (n - 1)))`` -- the conjugate of the engine's (textbook) sign. The
writer therefore stores ``conj(V)`` and the reader conjugates back; the WSClean test checks that
an off-centre source lands on its pixel (with the other sign it appears rotated by 180 deg).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import FK5

from alchemy_obs.observe.interferometer import Visibilities

__all__ = ["write_ms", "read_ms_data"]


def _casacore():
    try:
        import casacore.tables as ct
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "writing MeasurementSets needs python-casacore: pip install 'alchemy-obs[ms]'"
        ) from exc
    return ct


def _fill(ct, path: str, name: str, columns: dict, nrow: int) -> None:
    t = ct.table(f"{path}::{name}", readonly=False, ack=False)
    t.addrows(nrow)
    for col, values in columns.items():
        t.putcol(col, values)
    t.close()


def write_ms(vis: Visibilities, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``vis`` as a MeasurementSet at ``path`` (a folder); returns the path.

    Parameters
    ----------
    vis : Visibilities
    path : path-like
        Target ``*.ms`` folder.
    overwrite : bool
        Replace an existing MeasurementSet.
    """
    ct = _casacore()
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / "ms"
    obs = vis.observation
    tel = obs.telescope
    nrow, nchan = vis.data.shape
    npol = 2
    try:
        data_desc = ct.makearrcoldesc("DATA", 0j, valuetype="complex", shape=[nchan, npol],
                                      datamanagertype="TiledColumnStMan", datamanagergroup="Data")
        ms = ct.default_ms(str(tmp), ct.maketabdesc([data_desc]))
        ms.addrows(nrow)
        dump = obs.dump_time.to_value(u.s)
        ms.putcol("TIME", vis.time)
        ms.putcol("TIME_CENTROID", vis.time)
        ms.putcol("INTERVAL", np.full(nrow, dump))
        ms.putcol("EXPOSURE", np.full(nrow, dump))
        ms.putcol("ANTENNA1", vis.antenna1.astype(np.int32))
        ms.putcol("ANTENNA2", vis.antenna2.astype(np.int32))
        ms.putcol("UVW", vis.uvw)
        ms.putcol("DATA", np.repeat(np.conj(vis.data)[:, :, None], npol, axis=2).astype(np.complex64))
        ms.putcol("FLAG", np.repeat(vis.flag[:, :, None], npol, axis=2))
        ms.putcol("FLAG_ROW", vis.flag.all(axis=1))
        # Per-row weights: the channel-mean sigma (constant across channels here).
        sigma_pol = np.sqrt(2) * vis.sigma.mean(axis=1)
        ms.putcol("SIGMA", np.repeat(sigma_pol[:, None], npol, axis=1).astype(np.float32))
        ms.putcol("WEIGHT", np.repeat(1 / sigma_pol[:, None] ** 2, npol, axis=1).astype(np.float32))
        ms.putcol("SCAN_NUMBER", np.ones(nrow, np.int32))
        ms.putcol("STATE_ID", np.zeros(nrow, np.int32))
        ms.close()

        path_s = str(tmp)
        nant = tel.n_antennas
        _fill(ct, path_s, "ANTENNA", {
            "NAME": list(tel.antenna_names), "STATION": list(tel.antenna_names),
            "TYPE": ["GROUND-BASED"] * nant, "MOUNT": ["ALT-AZ"] * nant,
            "POSITION": tel.itrf(), "OFFSET": np.zeros((nant, 3)),
            "DISH_DIAMETER": tel.diameters.to_value(u.m), "FLAG_ROW": np.zeros(nant, bool),
        }, nant)
        freqs = vis.freq_hz
        width = obs.channel_width.to_value(u.Hz)
        _fill(ct, path_s, "SPECTRAL_WINDOW", {
            "NUM_CHAN": [nchan], "CHAN_FREQ": freqs[None], "CHAN_WIDTH": np.full((1, nchan), width),
            "EFFECTIVE_BW": np.full((1, nchan), width), "RESOLUTION": np.full((1, nchan), width),
            "REF_FREQUENCY": [freqs[0]], "TOTAL_BANDWIDTH": [width * nchan], "MEAS_FREQ_REF": [5],
            "NAME": ["SPW0"], "NET_SIDEBAND": [1], "FREQ_GROUP": [0], "FREQ_GROUP_NAME": ["G0"],
            "IF_CONV_CHAIN": [0], "FLAG_ROW": [False],
        }, 1)
        _fill(ct, path_s, "POLARIZATION", {
            "NUM_CORR": [npol], "CORR_TYPE": np.array([[9, 12]], np.int32),
            "CORR_PRODUCT": np.array([[[0, 0], [1, 1]]], np.int32), "FLAG_ROW": [False],
        }, 1)
        # FIELD directions are J2000 (FK5) by the MS default measure reference.
        centre = obs.phase_centre.transform_to(FK5(equinox="J2000"))
        direction = np.array([[[centre.ra.rad, centre.dec.rad]]])
        t0, t1 = vis.time.min() - dump / 2, vis.time.max() + dump / 2
        _fill(ct, path_s, "FIELD", {
            "NAME": ["MOCK"], "CODE": [""], "TIME": [t0], "NUM_POLY": [0],
            "DELAY_DIR": direction, "PHASE_DIR": direction, "REFERENCE_DIR": direction,
            "SOURCE_ID": [-1], "FLAG_ROW": [False],
        }, 1)
        _fill(ct, path_s, "DATA_DESCRIPTION", {
            "SPECTRAL_WINDOW_ID": [0], "POLARIZATION_ID": [0], "FLAG_ROW": [False],
        }, 1)
        _fill(ct, path_s, "OBSERVATION", {
            "TELESCOPE_NAME": [tel.name], "TIME_RANGE": np.array([[t0, t1]]), "OBSERVER": ["alchemy-obs"],
            "PROJECT": ["mock"], "SCHEDULE_TYPE": [""], "RELEASE_DATE": [t1], "FLAG_ROW": [False],
        }, 1)
        _fill(ct, path_s, "FEED", {
            "ANTENNA_ID": np.arange(nant, dtype=np.int32), "FEED_ID": np.zeros(nant, np.int32),
            "SPECTRAL_WINDOW_ID": np.full(nant, -1, np.int32), "TIME": np.full(nant, t0),
            "INTERVAL": np.full(nant, t1 - t0), "NUM_RECEPTORS": np.full(nant, 2, np.int32),
            "BEAM_ID": np.full(nant, -1, np.int32), "BEAM_OFFSET": np.zeros((nant, 2, 2)),
            "POLARIZATION_TYPE": np.array([["X", "Y"]] * nant),
            "POL_RESPONSE": np.tile(np.eye(2, dtype=np.complex64), (nant, 1, 1)),
            "POSITION": np.zeros((nant, 3)), "RECEPTOR_ANGLE": np.tile([0.0, np.pi / 2], (nant, 1)),
        }, nant)
        _fill(ct, path_s, "STATE", {
            "SIG": [True], "REF": [False], "CAL": [0.0], "LOAD": [0.0], "SUB_SCAN": [0],
            "OBS_MODE": ["OBSERVE_TARGET#ON_SOURCE"], "FLAG_ROW": [False],
        }, 1)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def read_ms_data(path: str | os.PathLike, column: str = "DATA") -> dict[str, np.ndarray]:
    """Read back UVW, antennas, time, flags and a data column of an MS.

    ``data`` (nrow, nchan, ncorr) is conjugated into the engine's sign convention.
    """
    ct = _casacore()
    with ct.table(str(path), ack=False) as ms:
        out = {c.lower(): ms.getcol(c) for c in ("UVW", "ANTENNA1", "ANTENNA2", "TIME", "FLAG")}
        out["data"] = np.conj(ms.getcol(column))
    with ct.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
        out["chan_freq"] = spw.getcol("CHAN_FREQ")[0]
    return out
