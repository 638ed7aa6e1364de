"""A local stand-in for the IllustrisTNG web API, for tests.

:class:`FakeTNGServer` serves TNG-layout cutout files in the API's URL layout on
127.0.0.1 (an OS-chosen port, one thread per request), checks the ``api-key`` header, and
injects faults from a queue::

    server.inject("500", "429", "truncate", match="cutout.hdf5")

Each request whose path contains ``match`` takes the next fault:

``"timeout"``   sleep ``timeout_sleep_s`` before answering (longer than the client timeout)
``"truncate"``  announce the full ``Content-Length`` but send only half the body, then close
``"500"``       HTTP 500
``"429"``       HTTP 429 with ``Retry-After: retry_after``
``"garbage"``   HTTP 200 with a body that is not HDF5 (correct length)
``"echo-key"``  HTTP 400 whose body quotes the request's ``api-key`` (a careless server)

The catalogue (search results and subhalo documents) is computed from the cutout files
themselves, in the API's code units (masses in 1e10 Msun/h, positions in ckpc/h).
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import h5py
import numpy as np

log = logging.getLogger("tests.fake_tng")

API_TYPES = {"gas": 0, "dm": 1, "stars": 4, "bhs": 5}
_FILTER = re.compile(r"^(?P<field>[a-z_]+)__(?P<op>gt|gte|lt|lte)$")
_OPS = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _subhalo_document(sid: int, snap: int, path: Path, base: str, hubble: float) -> dict[str, Any]:
    """The API's subhalo detail fields, computed from a cutout file (code units)."""
    doc: dict[str, Any] = {"id": sid, "snap": snap}
    with h5py.File(path, "r") as f:
        header = f["Header"].attrs
        counts = header["NumPart_ThisFile"]
        mass_table = header["MassTable"]
        total_mass = 0.0
        for name, number in API_TYPES.items():
            n = int(counts[number])
            group = f.get(f"PartType{number}")
            if group is not None and "Masses" in group:
                mass = float(np.sum(group["Masses"][:], dtype=np.float64))
            else:
                mass = n * float(mass_table[number])
            doc[f"len_{name}"] = n
            doc[f"mass_{name}"] = mass
            total_mass += mass
        doc["len"] = int(sum(int(counts[t]) for t in API_TYPES.values()))
        doc["mass"] = total_mass
        if "PartType0" in f and "StarFormationRate" in f["PartType0"]:
            doc["sfr"] = float(np.sum(f["PartType0/StarFormationRate"][:], dtype=np.float64))
        else:
            doc["sfr"] = 0.0
        # Subfind's position is the most bound particle; the fake uses the densest gas cell
        # when there is gas, else the median star.
        if "PartType0" in f and "Density" in f["PartType0"]:
            i = int(np.argmax(f["PartType0/Density"][:]))
            pos = f["PartType0/Coordinates"][i]
        else:
            pos = np.median(f["PartType4/Coordinates"][:], axis=0)
    doc.update(pos_x=float(pos[0]), pos_y=float(pos[1]), pos_z=float(pos[2]))
    doc["mass_log_msun"] = math.log10(total_mass * 1e10 / hubble)
    url = f"{base}/snapshots/{snap}/subhalos/{sid}/"
    doc["meta"] = {"url": url}
    doc["cutouts"] = {"subhalo": f"{url}cutout.hdf5"}
    return doc


def _filtered_cutout(path: Path, query: dict[str, list[str]]) -> bytes:
    """The cutout as the API cuts it: only the requested types and fields.

    Raises KeyError naming a requested field that the file does not have.
    """
    wanted = {name: query[name][0] for name in API_TYPES if name in query}
    buffer = io.BytesIO()
    with h5py.File(path, "r") as src, h5py.File(buffer, "w") as dst:
        src.copy("Header", dst)
        for name, number in API_TYPES.items():
            group = f"PartType{number}"
            if group not in src or (wanted and name not in wanted):
                continue
            fields = list(src[group]) if not wanted or wanted[name] == "all" else wanted[name].split(",")
            out = dst.create_group(group)
            for field in fields:
                if field not in src[group]:
                    raise KeyError(f"{name} field {field!r} is not available")
                src[group].copy(field, out)
    return buffer.getvalue()


class FakeTNGServer:
    """The TNG web API for one simulation and snapshot, served from cutout files.

    Parameters
    ----------
    cutouts : dict
        Subhalo ID -> path of a TNG-layout cutout file.
    api_key : str
        The only key accepted.
    simulation, snapshot, hubble, page_size : optional
        Name, snapshot number, h, and the largest search page (a larger ``limit`` is cut).
    timeout_sleep_s : float
        How long a ``"timeout"`` fault stalls.
    retry_after : str
        The ``Retry-After`` value of a ``"429"`` fault.
    """

    def __init__(
        self,
        cutouts: dict[int, Path],
        api_key: str,
        simulation: str = "TNG50-1",
        snapshot: int = 99,
        hubble: float = 0.6774,
        page_size: int = 100,
        timeout_sleep_s: float = 1.0,
        retry_after: str = "3",
    ) -> None:
        self.cutouts = dict(sorted(cutouts.items()))
        self.api_key = api_key
        self.simulation = simulation
        self.snapshot = snapshot
        self.hubble = hubble
        self.page_size = page_size
        self.timeout_sleep_s = timeout_sleep_s
        self.retry_after = retry_after
        self.requests: list[tuple[str, dict[str, list[str]], bool]] = []  # path, query, key ok
        self._faults: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._catalogue: list[dict[str, Any]] | None = None

    # lifecycle ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api``: the value for ``tng.base_url``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api"

    def start(self) -> FakeTNGServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeTNGServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # faults ------------------------------------------------------------------

    def inject(self, *faults: str, match: str = "") -> None:
        """Queue faults for the next requests whose path contains ``match``."""
        with self._lock:
            self._faults.extend((fault, match) for fault in faults)

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            if self._faults and self._faults[0][1] in path:
                return self._faults.popleft()[0]
        return None

    def count(self, fragment: str) -> int:
        """Number of requests whose path contains ``fragment``."""
        return sum(fragment in path for path, _, _ in self.requests)

    # catalogue ---------------------------------------------------------------

    @property
    def sim_url(self) -> str:
        return f"{self.base_url}/{self.simulation}"

    def catalogue(self) -> list[dict[str, Any]]:
        if self._catalogue is None:
            self._catalogue = [
                _subhalo_document(sid, self.snapshot, path, self.sim_url, self.hubble)
                for sid, path in self.cutouts.items()
            ]
        return self._catalogue

    def _search(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        rows = self.catalogue()
        limit = min(int(query.get("limit", [self.page_size])[0]), self.page_size)
        offset = int(query.get("offset", [0])[0])
        for key, values in query.items():
            if key in ("limit", "offset"):
                continue
            m = _FILTER.match(key)
            if m is None or m["field"] not in rows[0]:
                return 400, {"detail": f"unknown search parameter {key!r}"}
            value = float(values[0])
            rows = [r for r in rows if _OPS[m["op"]](r[m["field"]], value)]
        page = rows[offset: offset + limit]
        url = f"{self.sim_url}/snapshots/{self.snapshot}/subhalos/"
        following = None
        if offset + limit < len(rows):
            q = {k: v[0] for k, v in query.items()} | {"offset": offset + limit, "limit": limit}
            following = f"{url}?{urlencode(q)}"
        return 200, {
            "count": len(rows),
            "next": following,
            "previous": None,
            "results": [
                {"id": r["id"], "sfr": r["sfr"], "mass_log_msun": r["mass_log_msun"],
                 "url": r["meta"]["url"]}
                for r in page
            ],
        }

    # HTTP ----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("fake TNG: " + format, *args)

            def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(data).encode(), "application/json", extra)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                path, query = parts.path, parse_qs(parts.query)
                key = self.headers.get("api-key")
                server.requests.append((path, query, key == server.api_key))
                fault = server._take_fault(path)
                try:
                    self._answer(path, query, key, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a "timeout" fault): nothing to answer

            def _answer(self, path: str, query: dict[str, list[str]], key: str | None,
                        fault: str | None) -> None:
                if fault == "timeout":
                    time.sleep(server.timeout_sleep_s)
                elif fault == "500":
                    return self._json(500, {"detail": "internal server error"})
                elif fault == "429":
                    return self._json(429, {"detail": "slow down"}, {"Retry-After": server.retry_after})
                elif fault == "echo-key":
                    return self._json(400, {"detail": f"bad request with api-key {key}"})
                if key is None:
                    return self._json(401, {"detail": "Authentication credentials were not provided."})
                if key != server.api_key:
                    return self._json(403, {"detail": "Invalid API key."})
                sim = f"/api/{server.simulation}"
                snap = f"{sim}/snapshots/{server.snapshot}"
                if path in (sim, sim + "/"):
                    return self._json(200, {
                        "name": server.simulation, "hubble": server.hubble,
                        "num_snapshots": 100, "boxsize": 35000.0,
                    })
                if path == f"{snap}/subhalos/":
                    status, data = server._search(query)
                    return self._json(status, data)
                m = re.fullmatch(rf"{re.escape(snap)}/subhalos/(\d+)/(cutout\.hdf5)?", path)
                if m is None or int(m[1]) not in server.cutouts:
                    return self._json(404, {"detail": "Not found."})
                sid = int(m[1])
                if m[2] is None:
                    doc = next(r for r in server.catalogue() if r["id"] == sid)
                    return self._json(200, doc)
                try:
                    body = _filtered_cutout(server.cutouts[sid], query)
                except KeyError as exc:
                    return self._json(400, {"detail": str(exc)})
                disposition = {"Content-Disposition": f"attachment; filename=cutout_{sid}.hdf5"}
                if fault == "truncate":
                    self._send(200, body[: len(body) // 2], "application/x-hdf5", disposition,
                               length=len(body))
                    self.close_connection = True
                    return None
                if fault == "garbage":
                    body = b"<html>not a cutout</html>".ljust(len(body), b" ")
                return self._send(200, body, "application/x-hdf5", disposition)

        return Handler
