"""Client for the IllustrisTNG web API: subhalo search and particle cutout download.

The API (https://www.tng-project.org/data/docs/api/) is a tree of JSON documents::

    {base_url}/{simulation}/                                  simulation (``hubble``, ``boxsize``)
    {base_url}/{simulation}/snapshots/{snap}/subhalos/?...    search, paginated with ``next``
    {base_url}/{simulation}/snapshots/{snap}/subhalos/{id}/   one subhalo (``pos_x``, ``len_gas``...)
    {base_url}/{simulation}/snapshots/{snap}/subhalos/{id}/cutout.hdf5?gas=...&stars=...

Every request carries the user's key in the ``api-key`` HTTP header. The key is held as a
:class:`pydantic.SecretStr`, is sent only to the API's own host (never across a redirect to
another host), never goes into a URL, and is scrubbed from every message this module raises
or logs, because HTTP libraries quote URLs and server replies in their exception texts.

Examples
--------
>>> import astropy.units as u
>>> from alchemy_obs.config import load_config
>>> from alchemy_obs.sim.tng import TNGClient
>>> client = TNGClient(load_config().tng)                    # doctest: +SKIP
>>> hits = client.search_subhalos(min_mass=1e10 * u.Msun, limit=5)   # doctest: +SKIP
>>> path = client.download_cutout(hits[0].id)                # doctest: +SKIP
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import astropy.units as u
import h5py
import requests
from pydantic import SecretStr

from alchemy_obs.atomic import temporary_beside
from alchemy_obs.config import TNGConfig
from alchemy_obs.errors import AlchemyObsError
from alchemy_obs.physics.units import mass_factor

if TYPE_CHECKING:
    from alchemy_obs.sim.galaxy import Galaxy

__all__ = [
    "PART_TYPES",
    "CUTOUT_FIELDS",
    "TNGError",
    "TNGAuthError",
    "TNGNotFoundError",
    "SubhaloSummary",
    "TNGClient",
    "validate_cutout",
]

log = logging.getLogger(__name__)

#: API particle-type names and their ``PartTypeN`` numbers in TNG HDF5 files.
PART_TYPES: dict[str, int] = {"gas": 0, "dm": 1, "stars": 4, "bhs": 5}

#: Fields requested per particle type: what :class:`~alchemy_obs.sim.galaxy.Particles` holds.
#: DM has no ``Masses`` field in TNG (its mass is ``Header/MassTable[1]``).
CUTOUT_FIELDS: dict[str, tuple[str, ...]] = {
    "gas": (
        "Coordinates", "Velocities", "Masses", "ParticleIDs", "Density", "InternalEnergy",
        "ElectronAbundance", "NeutralHydrogenAbundance", "MagneticField", "StarFormationRate",
        "GFM_Metallicity", "GFM_Metals",
    ),
    "dm": ("Coordinates", "Velocities", "ParticleIDs", "SubfindHsml"),
    "stars": (
        "Coordinates", "Velocities", "Masses", "ParticleIDs", "GFM_StellarFormationTime",
        "GFM_Metallicity", "SubfindHsml",
    ),
    "bhs": ("Coordinates", "Velocities", "Masses", "ParticleIDs"),
}

# Search filters in the API's field names (masses in 1e10 Msun/h, counts in particles).
_MASS_FIELDS = {"stars": "mass_stars", "gas": "mass_gas", "dm": "mass_dm", "total": "mass"}
_COUNT_FIELDS = {"stars": "len_stars", "gas": "len_gas", "dm": "len_dm", "total": "len"}
_MAX_RETRY_AFTER_S = 600.0
_CHUNK_BYTES = 1 << 20

T = TypeVar("T")


class TNGError(AlchemyObsError, RuntimeError):
    """A TNG API request or download failed. The message never contains the API key."""


class TNGAuthError(TNGError):
    """The API refused the key (HTTP 401/403) or no key is configured."""


class TNGNotFoundError(TNGError):
    """The requested simulation, snapshot or subhalo does not exist (HTTP 404)."""


class _Transient(Exception):
    """A failure worth retrying; ``wait`` is a server-requested delay in seconds."""

    def __init__(self, reason: str, wait: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _KeySafeSession(requests.Session):
    """A session that drops the ``api-key`` header when a redirect leaves the API host.

    requests strips ``Authorization`` on such redirects but not custom headers.
    """

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            prepared_request.headers.pop("api-key", None)


@dataclass(frozen=True)
class SubhaloSummary:
    """One row of a subhalo search, as the API returns it.

    Attributes
    ----------
    id : int
        Subfind ID within the snapshot.
    snapshot : int
        Snapshot number.
    mass_log_msun : float
        log10 of the total (all types) subhalo mass in Msun.
    sfr : float
        Star formation rate in Msun/yr.
    url : str
        API address of the subhalo's detail document.
    """

    id: int
    snapshot: int
    mass_log_msun: float
    sfr: float
    url: str

    @property
    def total_mass(self) -> u.Quantity:
        """Total subhalo mass as a Quantity in Msun."""
        return (10.0 ** self.mass_log_msun) * u.Msun


class TNGClient:
    """Search and download IllustrisTNG subhaloes through the web API.

    Parameters
    ----------
    config : TNGConfig
        ``base_url``, ``simulation``, default ``snapshot``, ``cache_dir``, ``timeout_s``,
        ``retries``, ``backoff_s`` and the key (``TNG_API_KEY`` overrides ``api_key``).
    session : requests.Session, optional
        Session to use; by default one that drops the key on cross-host redirects.
    sleep : callable, optional
        Called with the delay in seconds between retries (tests pass a recorder).

    Notes
    -----
    Timeouts, connection errors, truncated bodies, HTTP 429 and 5xx are retried
    ``config.retries`` times with exponential backoff (``backoff_s * 2**attempt``, or the
    server's ``Retry-After`` if longer). 401/403 raise :class:`TNGAuthError` and 404
    :class:`TNGNotFoundError` at once.
    """

    def __init__(
        self,
        config: TNGConfig,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._key: SecretStr | None = config.resolved_api_key()
        self._session = session if session is not None else _KeySafeSession()
        self._sleep = sleep
        self._hubble: float | None = None

    def __repr__(self) -> str:
        key = "set" if self._key is not None else "missing"
        return (
            f"TNGClient(base_url={self.config.base_url!r}, simulation={self.config.simulation!r}, "
            f"snapshot={self.config.snapshot}, api_key=<{key}>)"
        )

    # ------------------------------------------------------------------ addresses

    def _snapshot_url(self, snapshot: int | None) -> str:
        snap = self.config.snapshot if snapshot is None else int(snapshot)
        return f"{self.config.base_url.rstrip('/')}/{self.config.simulation}/snapshots/{snap}"

    def subhalo_url(self, subhalo_id: int, snapshot: int | None = None) -> str:
        """API address of one subhalo's detail document."""
        return f"{self._snapshot_url(snapshot)}/subhalos/{int(subhalo_id)}/"

    def cutout_path(self, subhalo_id: int, snapshot: int | None = None) -> Path:
        """Cache location of a subhalo's cutout: ``cache_dir/SIM/snapshot_NNN/cutout_ID.hdf5``."""
        snap = self.config.snapshot if snapshot is None else int(snapshot)
        return (
            Path(self.config.cache_dir) / self.config.simulation / f"snapshot_{snap:03d}"
            / f"cutout_{int(subhalo_id)}.hdf5"
        )

    # ------------------------------------------------------------------ queries

    def simulation_info(self) -> dict[str, Any]:
        """The simulation's JSON document (``hubble``, ``boxsize``, ``num_snapshots``...)."""
        return self._get_json(f"{self.config.base_url.rstrip('/')}/{self.config.simulation}/")

    def hubble_param(self) -> float:
        """The simulation's h (``hubble``), fetched once per client."""
        if self._hubble is None:
            self._hubble = float(self.simulation_info()["hubble"])
        return self._hubble

    def subhalo(self, subhalo_id: int, snapshot: int | None = None) -> dict[str, Any]:
        """One subhalo's detail document (code units: ``pos_x`` in ckpc/h, masses in 1e10 Msun/h)."""
        return self._get_json(self.subhalo_url(subhalo_id, snapshot))

    def search_subhalos(
        self,
        *,
        snapshot: int | None = None,
        min_mass: u.Quantity | float | None = None,
        max_mass: u.Quantity | float | None = None,
        mass_type: Literal["stars", "gas", "dm", "total"] = "stars",
        min_particles: int | None = None,
        count_type: Literal["stars", "gas", "dm", "total"] = "total",
        limit: int = 100,
    ) -> list[SubhaloSummary]:
        """Subhaloes in a mass range with at least a number of particles.

        Parameters
        ----------
        snapshot : int, optional
            Snapshot number; the configured one by default.
        min_mass, max_mass : Quantity or float, optional
            Bounds on the ``mass_type`` mass (floats are Msun). Converted to the API's
            1e10 Msun/h with the simulation's h.
        mass_type : {"stars", "gas", "dm", "total"}
            Which mass to filter on (API fields ``mass_stars``, ``mass_gas``, ``mass_dm``, ``mass``).
        min_particles : int, optional
            Lower bound on the particle count of ``count_type``.
        count_type : {"stars", "gas", "dm", "total"}
            Which particles ``min_particles`` counts (API fields ``len_stars``, ``len_gas``,
            ``len_dm``, ``len``).
        limit : int
            Maximum number of results; pages are followed through ``next`` until reached.

        Returns
        -------
        list of SubhaloSummary
            In the API's order (Subfind ID).
        """
        if mass_type not in _MASS_FIELDS:
            raise ValueError(f"mass_type must be one of {sorted(_MASS_FIELDS)}, not {mass_type!r}")
        if count_type not in _COUNT_FIELDS:
            raise ValueError(f"count_type must be one of {sorted(_COUNT_FIELDS)}, not {count_type!r}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        params: dict[str, Any] = {"limit": min(limit, 100)}
        field = _MASS_FIELDS[mass_type]
        for bound, op in ((min_mass, "gte"), (max_mass, "lte")):
            if bound is not None:
                params[f"{field}__{op}"] = self._mass_to_api(bound)
        if min_particles is not None:
            params[f"{_COUNT_FIELDS[count_type]}__gte"] = int(min_particles)
        snap = self.config.snapshot if snapshot is None else int(snapshot)
        results: list[SubhaloSummary] = []
        for row in self._paginate(f"{self._snapshot_url(snap)}/subhalos/", params):
            results.append(
                SubhaloSummary(
                    id=int(row["id"]), snapshot=snap, mass_log_msun=float(row["mass_log_msun"]),
                    sfr=float(row["sfr"]), url=str(row["url"]),
                )
            )
            if len(results) >= limit:
                break
        return results

    def _mass_to_api(self, mass: u.Quantity | float) -> float:
        msun = mass.to_value(u.Msun) if isinstance(mass, u.Quantity) else float(mass)
        return msun / mass_factor(self.hubble_param())

    def _paginate(self, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page: dict[str, Any] = self._get_json(url, params)
        while True:
            yield from page.get("results", [])
            if not page.get("next"):
                return
            # ``next`` is a complete address that already carries the query.
            page = self._get_json(page["next"])

    # ------------------------------------------------------------------ downloads

    def download_cutout(
        self,
        subhalo_id: int,
        snapshot: int | None = None,
        fields: Mapping[str, Sequence[str]] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Download a subhalo's particles into the cache, or reuse a valid cached copy.

        The body is streamed to a temporary file beside the target, checked (size against
        ``Content-Length``; opens with h5py; has ``Header`` and every requested type that the
        header counts, with every requested field of the right length) and only then renamed
        into place. The subhalo's detail document is saved beside it as ``cutout_ID.json``
        (its ``pos_x/y/z`` is the centre used by :meth:`load_galaxy`).

        Parameters
        ----------
        subhalo_id : int
            Subfind ID.
        snapshot : int, optional
            Snapshot number; the configured one by default.
        fields : mapping, optional
            API particle type (``gas``, ``dm``, ``stars``, ``bhs``) -> field names;
            :data:`CUTOUT_FIELDS` by default.
        progress : callable, optional
            ``progress(bytes_done, bytes_total_or_None)``, called as the body arrives.

        Returns
        -------
        pathlib.Path
            The cached cutout file.
        """
        fields = dict(CUTOUT_FIELDS if fields is None else fields)
        unknown = sorted(set(fields) - set(PART_TYPES))
        if unknown:
            raise ValueError(f"unknown particle types {unknown}; use {sorted(PART_TYPES)}")
        path = self.cutout_path(subhalo_id, snapshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            write_json_atomic(meta_path, self.subhalo(subhalo_id, snapshot))
        if path.exists():
            try:
                validate_cutout(path, fields)
            except TNGError as exc:
                log.warning("cached cutout is unusable, downloading again: %s", exc)
            else:
                log.info("subhalo %d: using cached %s", subhalo_id, path)
                return path
        url = f"{self.subhalo_url(subhalo_id, snapshot)}cutout.hdf5"
        params = {ptype: ",".join(names) for ptype, names in fields.items()}
        what = f"cutout of subhalo {int(subhalo_id)} ({url})"
        self._retrying(what, lambda: self._fetch_file(url, params, path, fields, progress))
        log.info("subhalo %d: downloaded %s (%d bytes)", subhalo_id, path, path.stat().st_size)
        return path

    def load_galaxy(self, subhalo_id: int, snapshot: int | None = None) -> Galaxy:
        """Download (or reuse) a subhalo's cutout and load it centred on its ``SubhaloPos``."""
        from alchemy_obs.sim.galaxy import load_galaxy

        snap = self.config.snapshot if snapshot is None else int(snapshot)
        path = self.download_cutout(subhalo_id, snap)
        meta = json.loads(path.with_suffix(".json").read_text())
        centre = [float(meta["pos_x"]), float(meta["pos_y"]), float(meta["pos_z"])]
        return load_galaxy(path, subhalo_pos=centre, subhalo_id=int(subhalo_id), snapshot=snap)

    def _fetch_file(
        self,
        url: str,
        params: dict[str, str],
        dest: Path,
        fields: Mapping[str, Sequence[str]],
        progress: Callable[[int, int | None], None] | None,
    ) -> None:
        response = self._get(url, params, stream=True)
        # With a Content-Encoding the header counts encoded bytes; urllib3 checks those.
        expected = None
        if "Content-Length" in response.headers and "Content-Encoding" not in response.headers:
            expected = int(response.headers["Content-Length"])
        fd, tmp_name = temporary_beside(dest, suffix=".part")
        tmp = Path(tmp_name)
        try:
            done = 0
            with response, os.fdopen(fd, "wb") as fh:
                try:
                    for chunk in response.iter_content(_CHUNK_BYTES):
                        fh.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, expected)
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError) as exc:
                    raise _Transient(
                        f"truncated body, connection broken ({type(exc).__name__}: "
                        f"{self._scrub(str(exc))})"
                    ) from None
                fh.flush()
                os.fsync(fh.fileno())
            if expected is not None and done != expected:
                raise _Transient(f"truncated body: {done} of {expected} bytes")
            try:
                validate_cutout(tmp, fields, label=url)
            except TNGError as exc:
                raise _Transient(self._scrub(str(exc))) from None
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ HTTP core

    def _scrub(self, text: str) -> str:
        """``text`` with the key replaced, for messages quoting URLs or server replies."""
        if self._key is None:
            return text
        secret = self._key.get_secret_value()
        return text.replace(secret, "<api-key>") if secret else text

    def _get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        def action() -> Any:
            with self._get(url, params) as response:
                try:
                    return response.json()
                except ValueError:
                    raise _Transient(f"reply from {url} is not JSON") from None

        return self._retrying(url, action)

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except _Transient as exc:
                failure = exc
            # Raised outside the except block, so that no exception chain leads back to the
            # requests exception, whose request object carries the key in its headers.
            if attempt == attempts:
                raise TNGError(f"{what}: failed after {attempts} attempts; last error: {failure.reason}")
            delay = max(failure.wait, self.config.backoff_s * 2 ** (attempt - 1))
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)",
                what, failure.reason, delay, attempt + 1, attempts,
            )
            self._sleep(delay)
        raise ValueError(f"retries must be >= 0, not {self.config.retries}")

    def _get(self, url: str, params: dict[str, Any] | None = None, stream: bool = False) -> requests.Response:
        """One GET; returns a 200 response, raises ``_Transient`` or a final :class:`TNGError`."""
        if self._key is None:
            raise TNGAuthError(
                "no TNG API key: set the TNG_API_KEY environment variable or tng.api_key in "
                "your configuration (the key is on your profile page at www.tng-project.org)"
            )
        url = self._on_api_host(url)
        headers = {"api-key": self._key.get_secret_value(), "Accept": "application/json, application/x-hdf5"}
        try:
            response = self._session.get(
                url, params=params, headers=headers, stream=stream, timeout=self.config.timeout_s
            )
        except (requests.Timeout, requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"{type(exc).__name__}: {self._scrub(str(exc))}") from None
        except requests.RequestException as exc:
            fatal = f"{url}: {type(exc).__name__}: {self._scrub(str(exc))}"
        else:
            return self._check(response, url)
        raise TNGError(fatal)  # outside the except block: no chain to the request's headers

    def _on_api_host(self, url: str) -> str:
        """``url`` if it is on the API's host, with the API's scheme (no key in clear text).

        Addresses from the server (``next`` pages) are absolute and may say ``http``.
        """
        base, target = urlsplit(self.config.base_url), urlsplit(url)
        if (target.hostname, target.port) != (base.hostname, base.port):
            raise TNGError(
                f"refusing to send the API key to {target.hostname}: not the API host "
                f"{base.hostname} (tng.base_url)"
            )
        return urlunsplit(target._replace(scheme=base.scheme))

    def _check(self, response: requests.Response, url: str) -> requests.Response:
        """The response if it is a 200; otherwise the matching final or transient error."""
        status = response.status_code
        if status == 200:
            return response
        where = self._scrub(url)
        # Quote the server's explanation only for client errors: they say what was wrong.
        explanation = response.text[:300].strip() if 400 <= status < 500 else ""
        response.close()
        if status in (401, 403):
            raise TNGAuthError(
                f"{where}: HTTP {status}: invalid or missing API key (check TNG_API_KEY or "
                "tng.api_key; the key is on your profile page at www.tng-project.org)"
            )
        if status == 404:
            raise TNGNotFoundError(
                f"{where}: HTTP 404: not found (check simulation {self.config.simulation!r}, "
                "snapshot and subhalo ID)"
            )
        if status == 429 or status >= 500:
            wait = _retry_after(response.headers.get("Retry-After"))
            raise _Transient(f"HTTP {status} from {where}", wait=wait)
        raise TNGError(f"{where}: HTTP {status}: {self._scrub(explanation)}")


def _retry_after(value: str | None) -> float:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file in the same folder, then rename (atomic)."""
    fd, tmp = temporary_beside(path, suffix=".part")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def validate_cutout(
    path: str | os.PathLike, fields: Mapping[str, Sequence[str]], label: str | None = None
) -> None:
    """Check that an HDF5 file is a complete TNG cutout for the requested fields.

    Parameters
    ----------
    path : path-like
        The file.
    fields : mapping
        API particle type -> field names that must be present whenever the header counts
        particles of that type.
    label : str, optional
        Name used in messages instead of the path (e.g. the URL a temporary file came from).

    Raises
    ------
    TNGError
        Naming the file and what is missing: not HDF5, no ``Header``, no
        ``NumPart_ThisFile``, a missing ``PartTypeN`` group or field, or a field whose
        length disagrees with the header.
    """
    name = label or str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TNGError(f"{name}: not a readable HDF5 file ({exc})") from None
    with f:
        if "Header" not in f:
            raise TNGError(f"{name}: no Header group")
        counts = f["Header"].attrs.get("NumPart_ThisFile")
        if counts is None:
            raise TNGError(f"{name}: Header has no NumPart_ThisFile attribute")
        for ptype, names in fields.items():
            number = PART_TYPES[ptype]
            n = int(counts[number])
            if n == 0:
                continue
            group = f.get(f"PartType{number}")
            if group is None:
                raise TNGError(
                    f"{name}: Header counts {n} PartType{number} ({ptype}) particles but the "
                    f"group PartType{number} is missing"
                )
            missing = [field for field in names if field not in group]
            if missing:
                raise TNGError(f"{name}: PartType{number} lacks fields {missing}")
            short = [field for field in names if group[field].shape[0] != n]
            if short:
                raise TNGError(
                    f"{name}: PartType{number} fields {short} do not have the {n} rows the "
                    "Header counts"
                )
