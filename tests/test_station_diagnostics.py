"""Diagnostics counters from real drivers on real ptys, the station probes, the diag batch through
the contract, and the status file / ``fluxedge station status`` output."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from firmware_bridge.driver import Driver
from firmware_bridge.emulator import EmulatedInstrument, make_port
from firmware_bridge.families import family
from firmware_bridge.turbulence import TurbulenceModel, observe
from fluxedge.common import messages
from station import config as station_config
from station.acquisition.readers import InstrumentReader
from station.health import status, sysprobe
from station.health.diagnostics import InstrumentTap
from station.health.monitor import Monitor
from station.outbox.spool import Spool


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """One emulated instrument on a real pty, a real driver in a thread, a tap on the driver."""

    def __init__(self, name: str, tmp_path, tap_clock=time.monotonic) -> None:
        fam = family(name)
        self.port = make_port("pty", 0, tmp_path / name)
        self.inst = EmulatedInstrument(name, fam.Device(rate_hz=100, seed=5), self.port, seed=5)
        self.model = TurbulenceModel(seed=5)
        self.index, self.t = 0, 0.0
        self.driver = Driver(name, name, self.port.path, rate_hz=20, silence_s=0.2, backoff_min_s=0.05,
                             backoff_max_s=0.2)
        self.tap = InstrumentTap(name, fam, 20.0, clock=tap_clock)
        self.tap.attach(self.driver)
        self.thread = threading.Thread(target=self.driver.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.driver.connected:
            assert time.monotonic() < deadline, "driver never opened the pty"
            time.sleep(0.01)
        time.sleep(0.05)

    def emit(self, n: int) -> None:
        for _ in range(n):
            self.inst.emit(observe(self.model.draw(1), 100.5), self.index, self.t)
            self.index += 1
            self.t += 0.005
            time.sleep(0.003)

    def settle(self) -> None:
        last, still = -1, 0
        while still < 5:
            now = self.driver.parser.stats.frames_ok
            still = still + 1 if now == last else 0
            last = now
            time.sleep(0.02)

    def close(self) -> None:
        self.driver.stop()
        self.thread.join(3)
        self.port.close()


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(name, **kw):
        r = Rig(name, tmp_path, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_interval_counts_samples_checksums_gaps_and_flags(rig):
    clock = FakeClock()
    r = rig("csat3b", tap_clock=clock)
    stats0 = r.driver.parser.stats.as_dict()
    r.emit(30)
    r.inst.inject("bad_checksum", r.t, 10 * 0.005, probability=1.0)
    r.emit(10)
    r.inst.inject("rain", r.t, 20 * 0.005)
    r.emit(20)
    r.inst.inject("counter_gap", r.t, 5 * 0.005, probability=1.0)
    r.emit(5)
    r.emit(15)
    r.settle()
    clock.t += 5.0  # a 5-s interval at 20 Hz
    iv = r.tap.take_interval()
    v = iv.values
    stats = {k: x - stats0[k] for k, x in r.driver.parser.stats.as_dict().items()}
    assert r.inst.injected["bad_checksum"] == 10 and r.inst.injected["counter_gap"] == 5
    assert v["SAMPLES_RECEIVED"] == stats["frames_ok"] == 65  # 80 sent, 10 corrupted, 5 never sent
    assert (v["SAMPLES_EXPECTED"], v["SAMPLES_MISSING"]) == (100, 35)
    assert v["CHECKSUM_ERRORS"] == stats["checksum_errors"] == 10
    assert v["COUNTER_GAPS"] == stats["counter_gaps"] >= 2  # the rejected frames and the dropped ones
    assert v["RESYNCS"] == stats["resyncs"]
    # rain on a CSAT3B: amplitude low + poor lock on exactly the 20 rain samples, all rejected by valid()
    assert v["FLAG_AMPLITUDE_LOW"] == v["FLAG_POOR_LOCK"] == 20 and v["FLAGGED_SAMPLES"] == 20
    assert v["FLAG_AMPLITUDE_HIGH"] == 0
    assert v["CONNECTED"] == 1 and v["RECONNECTS"] == 0
    assert iv.metrics["MISSING_PCT"] == pytest.approx(35.0)
    assert iv.metrics["CHECKSUM_ERROR_PCT"] == pytest.approx(100 * 10 / 75)
    assert iv.metrics["FLAGGED_PCT"] == pytest.approx(100 * 20 / 65)
    assert "SIGNAL_MEAN" not in v  # a sonic has no signal strength
    # the next interval starts from zero
    clock.t += 1.0
    v2 = r.tap.take_interval().values
    assert (v2["SAMPLES_RECEIVED"], v2["CHECKSUM_ERRORS"], v2["COUNTER_GAPS"], v2["SAMPLES_EXPECTED"]) == (0, 0, 0, 20)


def test_signal_strength_mean_and_min_and_reconnects(rig):
    r = rig("li7500")
    r.emit(20)
    r.inst.inject("low_signal", r.t, 20 * 0.005)
    r.emit(20)
    r.emit(2)
    r.settle()
    v = r.tap.take_interval().values
    assert v["SAMPLES_RECEIVED"] == 42
    assert v["SIGNAL_MIN"] < 70 < v["SIGNAL_MEAN"] < 100
    assert v["FLAG_SIGNAL_LOW"] == 20 and v["FLAGGED_SAMPLES"] == 20
    # unplug and replug: one reconnect is counted
    r.inst.inject("disconnect", r.t, 0.2)
    r.emit(1)
    time.sleep(0.3)
    r.t += 0.3
    r.emit(1)
    deadline = time.monotonic() + 5
    while r.driver.opens < 2:
        assert time.monotonic() < deadline, "driver did not re-open"
        time.sleep(0.02)
    assert r.tap.take_interval().values["RECONNECTS"] == 1


def test_station_probes(tmp_path):
    thermal = tmp_path / "thermal"
    for i, (kind, milli) in enumerate([("acpitz", "41000"), ("cpu-thermal", "52312")]):
        (thermal / f"thermal_zone{i}").mkdir(parents=True)
        (thermal / f"thermal_zone{i}" / "type").write_text(kind + "\n")
        (thermal / f"thermal_zone{i}" / "temp").write_text(milli + "\n")
    assert sysprobe.cpu_temperature_degc(thermal) == pytest.approx(52.312)
    assert sysprobe.cpu_temperature_degc(tmp_path / "none") is None
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  250 kB\n")
    assert sysprobe.memory_used_pct(meminfo) == pytest.approx(75.0)
    meminfo.write_text("garbage\n")
    assert sysprobe.memory_used_pct(meminfo) is None
    free_mb, free_pct = sysprobe.disk_free(tmp_path)
    assert free_mb > 0 and 0 < free_pct <= 100
    assert sysprobe.ntp_synchronized() in (True, False, None)
    watch = sysprobe.ClockWatch(1000.0, 50.0)
    assert watch.update(1001.0, 51.0) == 0.0  # in step
    assert watch.update(1032.0, 52.0) == pytest.approx(30.0)  # wall clock jumped 30 s forward
    assert watch.update(1030.0, 53.0) == pytest.approx(-3.0)
    assert watch.take_interval() == pytest.approx(27.0) and watch.take_interval() == 0.0


def station_toml(tmp_path, port: str, extra: str = "") -> str:
    path = tmp_path / "station.toml"
    path.write_text(f"""
[site]
id = "diag-tower"
latitude_deg = 1.0
longitude_deg = 100.0
[acquisition]
averaging_period_s = 60
sample_rate_hz = 20
[[instruments]]
name = "sonic"
driver = "csat3b"
port = "{port}"
[mqtt]
port = 1
[spool]
path = "{tmp_path / 'spool.sqlite'}"
[diagnostics]
interval_s = 5
{extra}""")
    return str(path)


def test_monitor_spools_a_contract_diag_batch_and_writes_the_status(tmp_path):
    fam = family("csat3b")
    port = make_port("pty", 0, tmp_path / "sonic-link")
    inst = EmulatedInstrument("csat3b", fam.Device(rate_hz=100, seed=1), port, seed=1)
    cfg, _ = station_config.load(station_toml(tmp_path, port.path, '[[alarm]]\nname = "instrument_silent"\n'
                                                                  'above = 0.5\n'))
    reader = InstrumentReader(cfg.instruments[0], 20.0)
    spool = Spool(cfg.spool.path)
    monitor = Monitor(cfg, {"sonic": reader}, spool)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while not reader.connected:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.05)
        model = TurbulenceModel(seed=1)
        for i in range(40):
            inst.emit(observe(model.draw(1), 100.0), i, i * 0.01)
            time.sleep(0.003)
        time.sleep(0.3)
        mono, now = time.monotonic(), time.time()
        records = monitor.diagnostics_tick(now, mono)
        monitor.write_status(now, mono)
    finally:
        reader.stop()
        reader.join(3)
        port.close()
    # no broker at all: the silence alarm is spooled with the time it happened, for later delivery
    time.sleep(0.6)
    raised_at = time.time()
    monitor.fast_tick(raised_at, time.monotonic())
    monitor.fast_tick(raised_at + 1, time.monotonic())  # still silent: nothing new
    msg, alarm = spool.oldest(10)
    assert (alarm.kind, alarm.topic) == ("alarm", "fluxedge/v1/diag-tower/alarm")
    [event] = messages.decode("fluxedge", alarm.topic, alarm.payload).records
    assert (event.alarm, event.source, event.state) == ("instrument_silent", "sonic", "raised")
    assert event.time == pytest.approx(raised_at, abs=1e-3)
    spool.delete([alarm.id])
    assert (msg.kind, msg.topic) == ("diag", "fluxedge/v1/diag-tower/diag")
    batch = messages.decode("fluxedge", msg.topic, msg.payload)  # the collector's gate accepts it
    by_source = {r.source: r for r in batch.records}
    assert set(by_source) == {"sonic", "station"} and batch.records[0].time == pytest.approx(records[0].time, abs=1e-3)
    assert by_source["sonic"].values["SAMPLES_RECEIVED"] == 40
    st = by_source["station"].values
    assert st["SPOOL_DEPTH"] == 0 and st["SPOOL_DROPPED"] == 0 and st["DISK_FREE_MB"] > 0
    assert 0 <= st["MEM_USED_PCT"] <= 100 and st["LOAD_1M"] >= 0 and st["UPTIME_S"] >= 0
    assert st["CLOCK_JUMP_S"] == 0.0

    # the status file: written atomically beside the spool, shown by `fluxedge station status`
    doc = json.loads((tmp_path / "status.json").read_text())
    sonic = doc["instruments"]["sonic"]
    assert sonic["frames"] == 40 and sonic["driver"] == "csat3b" and sonic["flags"] == []
    assert doc["spool"]["depth"] == 1 and doc["mqtt"]["connected"] is False
    text = status.render(doc, now_s=now + 1)
    assert "sonic" in text and "csat3b" in text and "flux    none yet" in text and "NOT connected" in text
    cmd = [sys.executable, "-m", "fluxedge.cli", "station", "status", "-c", str(tmp_path / "station.toml")]
    shown = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "diag-tower" in shown.stdout and "u=" in shown.stdout
    doc["time"] -= 60  # nobody rewrote it for 60 s (> 3 x 5 s): the daemon is gone
    status.write_atomic(tmp_path / "status.json", doc)
    stale = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "not running" in stale.stderr and "Traceback" not in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1
    (tmp_path / "status.json").unlink()
    missing = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no status file" in missing.stderr


def test_status_render_shows_rates_flags_last_flux_and_alarms(tmp_path):
    now = 1_790_000_000.0
    doc = {"station": "t1", "version": "0.1", "pid": 42, "time": now - 2, "interval_s": 5, "uptime_s": 300,
           "instruments": {"irga": {"driver": "li7500", "connected": False, "rate_hz": 0.0, "silent_s": 12.5,
                                    "flags": ["signal_low"], "checksum_errors": 3, "resyncs": 1, "counter_gaps": 2,
                                    "last": {"co2": 16.2, "h2o": 520.1, "diag": 249}}},
           "spool": {"depth": 7, "oldest_age_s": 65.2, "dropped": 0},
           "mqtt": {"connected": True, "broker": "127.0.0.1:1883", "published": 12},
           "last_flux": {"time": now - 100, "period_end": "2026-09-21T10:30:00Z",
                         "values": {"H": 95.42, "LE": 310.0, "FC": -12.31, "USTAR": 0.41}},
           "met": {"PA": {"value": 100.9, "age_s": 3.0}},
           "alarms": [{"alarm": "instrument_silent", "source": "irga"}]}
    text = status.render(doc, now_s=now)
    assert "irga" in text and "DOWN" in text and "signal_low" in text and "3/1/2" in text
    assert "co2=16.2" in text and "diag=" not in text
    assert "7 waiting" in text and "mqtt    connected" in text
    assert "H 95.4 W m-2" in text and "FC -12.31" in text and "100 s ago" in text
    assert "PA 101" in text and "instrument_silent on irga" in text
    path = tmp_path / "status.json"
    status.write_atomic(path, doc)
    assert status.read(path, now_s=now + 12.5)["station"] == "t1"  # 14.5 s old: still fresh (< 3 x 5 s)
    with pytest.raises(status.StatusError, match=r"18 s old .* not running"):
        status.read(path, now_s=now + 16.0)
    path.write_text("{not json")
    with pytest.raises(status.StatusError, match="unreadable status file"):
        status.read(path, now_s=now)


def test_tap_adds_no_work_to_the_reader_callback_order():
    """The reader's own callback runs first and the tap only appends: numbers stay as delivered."""
    fam = family("csat3")
    seen = []

    class FakeDriver:
        parser = fam.Parser()
        connected = True
        opens = 1

        def on_batch(self, batch, now):
            seen.append(("reader", batch.n))

    drv = FakeDriver()
    tap = InstrumentTap("sonic", fam, 20.0)
    tap.attach(drv)
    from firmware_bridge.frames import Batch

    cols = {"u": np.ones(3), "diag": np.zeros(3, np.int64)}
    drv.on_batch(Batch(cols, np.arange(3)), 0.0)
    assert seen == [("reader", 3)] and tap.frames == 3 and tap.last_columns is cols
