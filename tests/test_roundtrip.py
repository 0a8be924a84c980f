"""Every streaming family end to end over a real pty (or TCP socket): emulator -> driver -> parser,
clean, under each fault, and after the fault is cleared."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from firmware_bridge.device import CONDITIONS
from firmware_bridge.driver import Driver
from firmware_bridge.emulator import EmulatedInstrument, make_port
from firmware_bridge.families import family
from firmware_bridge.faults import KINDS
from firmware_bridge.turbulence import TurbulenceModel, observe

#: family -> (channel compared with what was sent, absolute tolerance)
FAMILIES = {
    "csat3": ("u", 0.0011),
    "csat3b": ("u", 1e-5),
    "windmaster": ("u", 0.0051),
    "li7500": ("co2", 1e-5),
    "li7200": ("co2", 1e-5),
    "li7700": ("ch4", 1e-6),
}
STEP_S = 0.005  # one sample per 5 ms of wall time: a 200 Hz instrument


class Harness:
    """One emulated instrument on a real port and a real driver reading it in a thread."""

    def __init__(self, name: str, tmp_path, seed: int = 3) -> None:
        fam = family(name)
        self.name = name
        self.channel, self.tol = FAMILIES[name]
        transport = "tcp" if fam.TRANSPORT == "tcp" else "pty"
        port = make_port(transport, 0, tmp_path / name)
        self.inst = EmulatedInstrument(name, fam.Device(rate_hz=100, seed=seed), port,
                                       bauds=tuple(getattr(fam, "BAUDS", ())), seed=seed)
        self.model = TurbulenceModel(seed=seed)
        self.sent: list[np.ndarray] = []
        self.decoded: list[dict[str, np.ndarray]] = []
        self.events: list[str] = []
        self.index = 0
        self.t = 0.0
        self.driver = Driver(name, name, port.path, rate_hz=20, silence_s=0.1, reopen_after_silence_s=60,
                             backoff_min_s=0.05, backoff_max_s=0.2, on_batch=self._on_batch, on_event=self._on_event)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.driver.run, daemon=True)
        self._thread.start()
        self.wait(lambda: self.driver.connected, "driver never opened the port")
        time.sleep(0.05)

    def _on_batch(self, batch, now: float) -> None:
        with self._lock:
            self.decoded.append(batch.columns)

    def _on_event(self, name: str, level: int, fields: dict) -> None:
        self.events.append(name)

    def emit(self, n: int) -> None:
        for _ in range(n):
            obs = observe(self.model.draw(1), 100.5)
            self.sent.append(obs[self.channel] if self.channel in obs else np.array([np.nan]))
            self.inst.emit(obs, self.index, self.t)
            self.index += 1
            self.t += STEP_S
            time.sleep(STEP_S)

    def frames(self) -> int:
        return self.driver.parser.stats.frames_ok

    def wait(self, condition, message: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {message}; events {self.events}, "
                                     f"stats {self.driver.parser.stats}")
            time.sleep(0.01)

    def settle(self) -> None:
        """Wait until the driver has read everything sent so far."""
        last, still = -1, 0
        while still < 5:
            now = self.frames()
            still = still + 1 if now == last else 0
            last = now
            time.sleep(0.02)

    def columns(self) -> dict[str, np.ndarray]:
        with self._lock:
            batches = list(self.decoded)
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}

    def assert_values_were_sent(self) -> None:
        """Every decoded value of the checked channel is one the emulator sent (no damaged frame
        was accepted as data)."""
        got = self.columns()[self.channel]
        sent = np.concatenate(self.sent)
        got = got[np.isfinite(got)]
        err = np.min(np.abs(got[:, None] - sent[None, :]), axis=1)
        assert np.all(err <= self.tol), f"{self.name}: decoded values never sent: {got[err > self.tol][:5]}"

    def close(self) -> None:
        self.driver.stop()
        self._thread.join(3)
        self.inst.port.close()


@pytest.fixture
def harness(request, tmp_path):
    made: list[Harness] = []

    def make(name: str, **kw) -> Harness:
        h = Harness(name, tmp_path, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _clean_phase(h: Harness, n: int = 30) -> int:
    before = h.frames()
    h.emit(n)
    h.settle()
    assert h.frames() - before == n, f"{h.name}: {h.frames() - before} of {n} clean frames decoded"
    return h.frames()


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_fault_and_recovery(harness, name, kind):
    h = harness(name)
    fam = family(name)
    _clean_phase(h, 20)
    stats0 = h.driver.parser.stats.as_dict()
    h.inst.inject(kind, h.t, probability=0.3 if kind in ("noise", "truncate", "bad_checksum", "counter_gap") else 1.0)
    n_fault = 50
    h.emit(n_fault)
    if kind in ("silence", "disconnect"):
        h.wait(lambda: "instrument_silent" in h.events or "instrument_lost" in h.events,
               f"{kind} went unnoticed")
    h.settle()
    h.inst.clear(h.t)
    stats1 = h.driver.parser.stats.as_dict()
    delta = {k: stats1[k] - stats0[k] for k in stats1}
    hits = h.inst.injected[kind]

    if kind in ("noise", "truncate", "bad_checksum"):
        assert hits > 0
        rejected = delta["checksum_errors"] + delta["malformed"] + delta["resyncs"]
        assert rejected > 0, f"{kind}: {hits} damaged frames but nothing counted: {delta}"
        if kind == "bad_checksum" and name not in ("csat3", "li7500", "li7200", "li7700"):
            assert delta["checksum_errors"] == hits, delta
        # an intact frame may be lost only next to a damaged one
        assert delta["frames_ok"] >= n_fault - 2 * hits - (hits if kind != "noise" else 0), delta
    elif kind == "counter_gap":
        assert hits > 0
        assert delta["frames_ok"] == n_fault - hits, delta
    elif kind in CONDITIONS:
        cols = h.columns()
        tail = {k: v[-n_fault:] for k, v in cols.items()}
        flags = fam.decode_flags(tail["diag"]) if "diag" in tail else {}
        raised = [f for f, v in flags.items() if np.all(v)]
        assert raised or not np.any(fam.valid(tail)), f"{kind}: no diagnostic flag raised"
        assert not np.any(fam.valid(tail)), f"{kind}: frames still pass valid()"
    elif kind == "silence":
        assert delta["frames_ok"] == 0
        assert "instrument_silent" in h.events
    elif kind == "disconnect":
        assert "instrument_lost" in h.events
        assert not h.inst.port.up
        h.emit(1)  # the device reappears (a new pty behind the same path)
        h.wait(lambda: h.driver.connected, "driver did not re-open after the device reappeared")
    elif kind == "transducer_noise":
        assert delta["frames_ok"] == n_fault  # intact frames carrying wrong values
        if fam.ROLE == "sonic":
            w = h.columns()["w"][-n_fault:]
            assert hits == n_fault and np.nanstd(w) > 0.7, (hits, np.nanstd(w))  # sigma_w 0.35 without it
        else:
            assert hits == 0  # a gas analyser has no transducer pair
    elif kind == "wrong_baud":
        if h.inst.port.kind == "tcp":
            assert delta["frames_ok"] == n_fault  # no baud rate on a socket: no effect
        else:
            assert delta["frames_ok"] <= 2, f"decoded frames at the wrong baud: {delta}"

    # recovery: the same driver, without restarting anything, decodes clean data again
    if kind == "disconnect":
        time.sleep(0.1)
    before = h.frames()
    h.emit(30)
    h.settle()
    recovered = h.frames() - before
    assert recovered >= 28, f"{name} after {kind}: only {recovered} of 30 frames decoded"
    if kind in ("silence", "disconnect"):
        assert "instrument_recovered" in h.events or kind == "disconnect"
    if kind == "counter_gap" and getattr(fam, "HAS_COUNTER", True):
        # a gap at the end of the fault shows when the next frame arrives, hence checked here
        missed = h.driver.parser.stats.samples_missed - stats0["samples_missed"]
        assert missed == hits, f"{hits} records dropped, parser counted {missed} missed"
    if kind == "transducer_noise" and fam.ROLE == "sonic":
        assert np.nanstd(h.columns()["w"][-30:]) < 0.6
    if kind in CONDITIONS:
        tail = {k: v[-25:] for k, v in h.columns().items()}
        assert np.all(fam.valid(tail)), f"{kind} flags did not clear"
    h.assert_values_were_sent()


def test_emulator_answers_commands_over_the_pty(harness):
    """The driver's start command reaches the CSAT3 emulator, which keeps streaming afterwards."""
    h = harness("csat3")
    _clean_phase(h, 10)
    assert h.inst.device.sync and not h.inst.device.terminal

