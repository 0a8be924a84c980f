"""Shutdown: reader threads are joined, so no instrument port is still open (or still being
connected) when the daemon's run() returns. The instruments sit behind a real TCP listener whose
accept queue is full, so a connect hangs for its whole timeout (3 s), as on a dead serial server."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

from fluxedge.demo import towerconfig
from fluxedge.demo.towerconfig import Instrument
from station import config as station_config
from station.acquisition.readers import InstrumentReader
from station.config import InstrumentConfig
from station.daemon import Station


@contextlib.contextmanager
def hanging_tcp_port():
    """A port on 127.0.0.1 where connect() neither succeeds nor fails until its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    for _ in range(2):  # fill the accept queue; further SYNs are dropped
        s = socket.socket()
        s.settimeout(0.3)
        try:
            s.connect(("127.0.0.1", port))
            queued.append(s)
        except OSError:
            s.close()
    try:
        yield port
    finally:
        for s in queued:
            s.close()
        server.close()


def test_reader_stop_with_a_timeout_returns_once_its_thread_has_ended():
    with hanging_tcp_port() as port:
        reader = InstrumentReader(InstrumentConfig("sonic", "csat3", f"tcp://127.0.0.1:{port}"), 20.0)
        reader.start()
        time.sleep(0.3)  # now inside its first connect (3 s)
        assert reader.is_alive()
        started = time.monotonic()
        reader.stop(timeout_s=10.0)
        assert not reader.is_alive()
        assert time.monotonic() - started < 9.0


def test_station_run_returns_only_after_every_reader_thread_ended(tmp_path, mosquitto, caplog):
    caplog.set_level(logging.INFO)
    with hanging_tcp_port() as port:
        toml = tmp_path / "station.toml"
        toml.write_text(towerconfig.station_toml(
            "shutdown", [Instrument("sonic", "csat3", f"tcp://127.0.0.1:{port}"),
                         Instrument("irga", "li7500", f"tcp://127.0.0.1:{port}")],
            mqtt_port=mosquitto.port, spool_path=tmp_path / "spool.sqlite", period_s=60))
        cfg, digest = station_config.load(toml)
        station = Station(cfg, digest)
        runner = threading.Thread(target=station.run, daemon=True)
        runner.start()
        deadline = time.monotonic() + 30
        while not any("station_started" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the station did not start"
            time.sleep(0.02)
        station.stop()  # the readers are inside their 3-s connects
        runner.join(60)
        assert not runner.is_alive()
        alive = [r.name for r in station.readers.values() if r.is_alive()]
        assert alive == []
