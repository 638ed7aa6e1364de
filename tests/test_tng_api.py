"""The TNG web API client against a local fake of the API on 127.0.0.1 (see fake_tng_server)."""

from __future__ import annotations

import email.utils
import logging
import math
import socket
import time
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pytest
import requests
from fake_tng_server import FakeTNGServer

from alchemy_obs.cli import main
from alchemy_obs.config import ConfigError, TNGConfig, load_config
from alchemy_obs.sim.galaxy import Galaxy
from alchemy_obs.sim.synthetic import make_synthetic_cutout
from alchemy_obs.sim.tng import (
    CUTOUT_FIELDS,
    PART_TYPES,
    TNGAuthError,
    TNGClient,
    TNGError,
    TNGNotFoundError,
    validate_cutout,
)

pytestmark = pytest.mark.network

KEY = "k3y-0f-7he-7es7-5u173-9f2c1a"
IDS = (0, 3, 7, 12, 20)


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("served")
    return {
        sid: Path(make_synthetic_cutout(folder / f"cutout_{sid}.hdf5", i, 3000, seed=11))
        for i, sid in enumerate(IDS)
    }


@pytest.fixture
def server(cutouts: dict[int, Path]):
    # The client timeout (1.5 s) is far above a local reply even on a loaded machine, and the
    # "timeout" fault stalls well beyond it.
    with FakeTNGServer(cutouts, KEY, page_size=2, timeout_sleep_s=2.5) as srv:
        yield srv


class Sleeps(list):
    """Records the delays the client asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def config(server: FakeTNGServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TNGConfig:
    monkeypatch.setenv("TNG_API_KEY", KEY)
    return TNGConfig(
        base_url=server.base_url, cache_dir=tmp_path / "cache", timeout_s=1.5, retries=3,
        backoff_s=0.05,
    )


@pytest.fixture
def client(config: TNGConfig, sleeps: Sleeps) -> TNGClient:
    return TNGClient(config, sleep=sleeps)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# ----------------------------------------------------------------------------- search

def test_search_converts_msun_to_api_units_and_follows_pages(client, server):
    h = server.hubble
    stellar = {r["id"]: r["mass_stars"] * 1e10 / h for r in server.catalogue()}
    lo, hi = sorted(stellar.values())[1], sorted(stellar.values())[3]
    hits = client.search_subhalos(min_mass=lo * (1 - 1e-6) * u.Msun, max_mass=hi * (1 + 1e-6), limit=50)
    assert [s.id for s in hits] == sorted(sid for sid, m in stellar.items() if lo <= m * (1 + 1e-9) and m <= hi * (1 + 1e-9))
    assert len(hits) == 3
    # page size 2: the third result came from the ``next`` page
    assert server.count("/subhalos/") >= 2
    first = server.requests[1][1]
    assert float(first["mass_stars__gte"][0]) == pytest.approx(lo * (1 - 1e-6) * h / 1e10)
    row = next(r for r in server.catalogue() if r["id"] == hits[0].id)
    assert hits[0].total_mass.to_value(u.Msun) == pytest.approx(10 ** row["mass_log_msun"])


def test_search_particle_count_and_limit(client, server):
    counts = {r["id"]: r["len_gas"] for r in server.catalogue()}
    threshold = sorted(counts.values())[2]
    hits = client.search_subhalos(min_particles=threshold, count_type="gas")
    assert {s.id for s in hits} == {sid for sid, n in counts.items() if n >= threshold}
    assert [s.id for s in client.search_subhalos(limit=3)] == list(IDS[:3])
    with pytest.raises(ValueError, match="mass_type"):
        client.search_subhalos(mass_type="baryons")


def test_search_recovers_from_server_errors(client, server, sleeps):
    server.inject("500", "429", match="/subhalos/")
    assert [s.id for s in client.search_subhalos()] == list(IDS)
    assert sleeps[0] == pytest.approx(0.05)  # backoff_s * 2**0
    assert sleeps[1] == pytest.approx(3.0)   # Retry-After beats the 0.1 s backoff


# ----------------------------------------------------------------------------- download

def test_download_validates_and_holds_requested_fields(client, server, cutouts):
    path = client.download_cutout(7)
    assert path == client.cutout_path(7) and path.name == "cutout_7.hdf5"
    validate_cutout(path, CUTOUT_FIELDS)
    with h5py.File(path) as got, h5py.File(cutouts[7]) as sent:
        for ptype, names in CUTOUT_FIELDS.items():
            group = f"PartType{PART_TYPES[ptype]}"
            if group not in sent:
                continue
            assert sorted(got[group]) == sorted(names)
            for name in names:
                np.testing.assert_array_equal(got[group][name][()], sent[group][name][()])
    query = next(q for p, q, _ in server.requests if p.endswith("cutout.hdf5"))
    assert query["gas"][0].split(",") == list(CUTOUT_FIELDS["gas"])
    assert all(ok for _, _, ok in server.requests)
    assert leftovers(client.config.cache_dir) == []


def test_downloaded_cutout_loads_as_galaxy(client, server):
    galaxy = client.load_galaxy(3)
    assert isinstance(galaxy, Galaxy)
    doc = next(r for r in server.catalogue() if r["id"] == 3)
    assert galaxy.subhalo_id == 3 and galaxy.snapshot == 99
    np.testing.assert_allclose(galaxy.centre_ckpch, [doc["pos_x"], doc["pos_y"], doc["pos_z"]])
    assert len(galaxy.gas) == doc["len_gas"]
    # 1e10 Msun/h -> Msun, summed over cells
    assert galaxy.gas.masses.sum() == pytest.approx(doc["mass_gas"] * 1e10 / server.hubble, rel=1e-5)


def test_cached_cutout_is_reused(client, server):
    first = client.download_cutout(0)
    stamp = first.stat().st_mtime_ns
    before = len(server.requests)
    again = TNGClient(client.config).download_cutout(0)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert len(server.requests) == before


def test_corrupt_cached_cutout_is_downloaded_again(client, server):
    path = client.download_cutout(0)
    path.write_bytes(path.read_bytes()[:500])
    assert client.download_cutout(0) == path
    assert server.count("cutout.hdf5") == 2
    validate_cutout(path, CUTOUT_FIELDS)


@pytest.mark.parametrize("fault", ["timeout", "truncate", "500", "429", "garbage"])
def test_download_recovers_from_fault(client, server, sleeps, fault):
    server.inject(fault, fault, match="cutout.hdf5")
    path = client.download_cutout(12)
    validate_cutout(path, CUTOUT_FIELDS)
    assert server.count("cutout.hdf5") == 3
    assert len(sleeps) == 2
    expected = [3.0, 3.0] if fault == "429" else [0.05, 0.1]
    assert sleeps == pytest.approx(expected)
    assert leftovers(client.config.cache_dir) == []


@pytest.mark.parametrize("fault", ["truncate", "500"])
def test_download_gives_up_cleanly(client, server, fault):
    server.inject(*[fault] * 4, match="cutout.hdf5")
    with pytest.raises(TNGError, match=r"cutout of subhalo 20 .* failed after 4 attempts") as err:
        client.download_cutout(20)
    assert ("truncated" in str(err.value)) == (fault == "truncate")
    assert not client.cutout_path(20).exists()
    assert leftovers(client.config.cache_dir) == []


def test_timeout_on_json_request_is_retried(client, server, sleeps):
    server.inject("timeout", match="/subhalos/3/")
    assert client.subhalo(3)["id"] == 3
    assert sleeps == [pytest.approx(0.05)]


def test_retry_after_as_http_date(cutouts, config, sleeps):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    with FakeTNGServer(cutouts, KEY, retry_after=when) as srv:
        srv.inject("429", match="/subhalos/0/")
        cfg = config.model_copy(update={"base_url": srv.base_url})
        assert TNGClient(cfg, sleep=sleeps).subhalo(0)["id"] == 0
    assert sleeps == [pytest.approx(30, abs=3)]


def test_validate_cutout_names_file_and_missing_part(cutouts, tmp_path):
    broken = tmp_path / "cutout_0.hdf5"
    with h5py.File(cutouts[0]) as src, h5py.File(broken, "w") as dst:
        src.copy("Header", dst)
        src.copy("PartType4", dst)
    with pytest.raises(TNGError, match=rf"{broken}: Header counts \d+ PartType0 \(gas\) particles "
                                       "but the group PartType0 is missing"):
        validate_cutout(broken, CUTOUT_FIELDS)
    with h5py.File(broken, "a") as f:
        f.create_group("PartType0")
        f["PartType0/Coordinates"] = np.zeros((3, 3))
    with pytest.raises(TNGError, match=r"PartType0 lacks fields \['Velocities'"):
        validate_cutout(broken, CUTOUT_FIELDS)
    broken.write_bytes(cutouts[0].read_bytes()[:4000])
    with pytest.raises(TNGError, match=rf"{broken}: not a readable HDF5 file"):
        validate_cutout(broken, CUTOUT_FIELDS)


# ----------------------------------------------------------------------------- clear failures

def test_wrong_key_fails_at_once(config, server, sleeps, monkeypatch):
    monkeypatch.setenv("TNG_API_KEY", "not-the-right-key")
    with pytest.raises(TNGAuthError, match="invalid or missing API key") as err:
        TNGClient(config, sleep=sleeps).download_cutout(0)
    assert "not-the-right-key" not in str(err.value)
    assert len(server.requests) == 1 and sleeps == []
    assert not config.cache_dir.joinpath("TNG50-1").exists() or leftovers(config.cache_dir) == []


def test_missing_key_fails_before_any_request(config, server, monkeypatch):
    monkeypatch.delenv("TNG_API_KEY")
    with pytest.raises(TNGAuthError, match="TNG_API_KEY"):
        TNGClient(config).search_subhalos()
    assert server.requests == []


def test_unknown_subhalo_is_404(client, server, sleeps):
    with pytest.raises(TNGNotFoundError, match=r"snapshots/99/subhalos/5/: HTTP 404"):
        client.download_cutout(5)
    assert sleeps == []
    assert not client.cutout_path(5).exists()


def test_unknown_field_is_a_clear_error(client):
    with pytest.raises(TNGError, match="HTTP 400.*NoSuchField"):
        client.download_cutout(0, fields={"gas": ["Coordinates", "NoSuchField"]})
    with pytest.raises(ValueError, match="unknown particle types"):
        client.download_cutout(0, fields={"wind": ["Coordinates"]})


# ----------------------------------------------------------------------------- the key stays secret

def test_key_never_leaks(config, server, sleeps, caplog, monkeypatch, tmp_path, capsys):
    caplog.set_level(logging.DEBUG)  # root: urllib3, requests, alchemy_obs and the fake server
    for name in ("urllib3", "urllib3.connectionpool", "requests", "alchemy_obs"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    config.retries = 5  # room for every fault below
    client = TNGClient(config, sleep=sleeps)
    texts = [repr(client), str(client), repr(config), str(config), config.model_dump_json(),
             repr(config.model_dump()), repr(config.resolved_api_key())]

    client.search_subhalos(min_mass=1e8, limit=10)
    server.inject("timeout", "truncate", "500", "429", "garbage", match="cutout.hdf5")
    client.download_cutout(0)
    server.inject("echo-key", match="/subhalos/3/")
    failures = []
    with pytest.raises(TNGError) as err:  # the server quotes the key back in its error page
        client.subhalo(3)
    failures.append(err)
    server.inject(*["500"] * 6, match="/subhalos/7/")
    with pytest.raises(TNGError) as err:
        client.subhalo(7)
    failures.append(err)
    with pytest.raises(TNGNotFoundError) as err:
        client.download_cutout(999)
    failures.append(err)
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    refused = config.model_copy(update={"base_url": f"http://127.0.0.1:{closed}/api", "retries": 1})
    with pytest.raises(TNGError, match="failed after 2 attempts.*ConnectionError") as err:
        TNGClient(refused, sleep=sleeps).subhalo(0)
    failures.append(err)
    monkeypatch.setenv("TNG_API_KEY", KEY + "-wrong")
    with pytest.raises(TNGAuthError) as err:
        TNGClient(config).subhalo(0)
    failures.append(err)
    # the CLI path, verbose, with the key given through --set as well
    monkeypatch.setenv("TNG_API_KEY", KEY)
    assert main(["tng", "-v", "--set", f"tng.base_url={server.base_url}",
                 "--set", f"tng.cache_dir={tmp_path / 'cli'}", "--set", f"tng.api_key={KEY}",
                 "download", "0", "404404"]) == 1
    out = capsys.readouterr()
    with pytest.raises(ConfigError) as err:  # a bad override next to the key
        load_config(None, [f"tng.api_key={KEY}", "tng.retries=-1"])
    failures.append(err)

    for exc in failures:
        texts += [str(exc.value), repr(exc.value), str(exc.getrepr())]
        linked, chain = exc.value, []
        while linked is not None:  # no path back to a request object holding the headers
            chain.append(linked)
            linked = linked.__cause__ or linked.__context__
        assert not any(isinstance(e, requests.RequestException) for e in chain), chain
    texts += [r.getMessage() for r in caplog.records]
    texts += [logging.Formatter().format(r) for r in caplog.records]
    texts += [out.out, out.err]
    assert len(caplog.records) > 10 and any(r.name.startswith("urllib3") for r in caplog.records)
    leaked = [t for t in texts if KEY in t]
    assert leaked == []
    assert "bad request with api-key <api-key>" in str(failures[0].value)
    for path in list(config.cache_dir.rglob("*")) + list((tmp_path / "cli").rglob("*")):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    # the key travelled only as a header, never in a query string
    assert all(KEY not in str(query) for _, query, _ in server.requests)


def test_key_not_forwarded_to_another_host(tmp_path, monkeypatch, cutouts):
    """A redirect off the API host must not carry the key (requests only strips Authorization)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    seen: list[str | None] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("api-key"))
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with FakeTNGServer(cutouts, KEY) as other:
        # same machine, different origin (another port): treated as another host
        target = other.base_url + "/TNG50-1/"
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            monkeypatch.setenv("TNG_API_KEY", KEY)
            cfg = TNGConfig(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/api", retries=0)
            with pytest.raises(TNGAuthError):
                TNGClient(cfg).simulation_info()
        finally:
            httpd.shutdown()
            httpd.server_close()
        assert seen == [KEY]
        assert other.requests and other.requests[0][2] is False


def test_key_only_sent_to_the_api_host(client, server, monkeypatch):
    """``next`` links come from the server; one pointing elsewhere must not get the key."""
    monkeypatch.setattr(type(server), "sim_url", property(
        lambda self: self.base_url.replace("127.0.0.1", "localhost") + "/" + self.simulation))
    with pytest.raises(TNGError, match="refusing to send the API key to localhost"):
        client.search_subhalos(limit=10)
    assert server.count("/subhalos/") == 1


def test_plain_http_link_is_upgraded_to_the_api_scheme(client):
    base = client.config.base_url
    https = client.config.model_copy(update={"base_url": base.replace("http://", "https://")})
    upgraded = TNGClient(https)._on_api_host(base + "/TNG50-1/?offset=2")
    assert upgraded == https.base_url + "/TNG50-1/?offset=2"


# ----------------------------------------------------------------------------- CLI

def cli(server: FakeTNGServer, cache: Path, *args: str) -> int:
    return main(["tng", *args, "--set", f"tng.base_url={server.base_url}",
                 "--set", f"tng.cache_dir={cache}", "--set", "tng.backoff_s=0"])


def test_cli_search_prints_a_table(server, config, capsys):
    h = server.hubble
    rows = {r["id"]: r for r in server.catalogue()}
    stellar = sorted(r["mass_stars"] * 1e10 / h for r in rows.values())
    lo, hi = stellar[0] * 0.999, stellar[-1] * 1.001
    assert cli(server, config.cache_dir, "search", "--min-mass", f"{lo:.6e}", "--max-mass",
               f"{hi:.6e}", "--limit", "4", "--snapshot", "99") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["id", "log10(M/Msun)"]
    assert [int(line.split()[0]) for line in lines[2:]] == list(IDS[:4])
    first = rows[IDS[0]]
    cells = lines[2].split()
    assert float(cells[2]) == pytest.approx(math.log10(first["mass_stars"] * 1e10 / h), abs=0.01)
    assert int(cells[4]) == first["len_gas"]


def test_cli_download_and_errors(server, config, capsys):
    assert cli(server, config.cache_dir, "download", "3", "12") == 0
    out = capsys.readouterr().out
    for sid in (3, 12):
        assert str(TNGClient(config).cutout_path(sid)) in out
    assert cli(server, config.cache_dir, "download", "5") == 1
    assert "subhalos/5/: HTTP 404" in capsys.readouterr().err


def test_cli_help_is_for_astronomers(capsys):
    with pytest.raises(SystemExit):
        main(["tng", "search", "--help"])
    text = capsys.readouterr().out
    assert "--min-mass" in text and "Msun" in text and "--min-particles" in text
