"""LI-COR LI-7700 open-path CH4 analyser: tab-delimited text over TCP (port 7700).

Source: LI-7700 manual "Data files" and "Configuration grammar" pages, Campbell CRBasic ``LI7700()``
help, EddyPro diagnostics page (shared/reference/instruments.md section 5).

Stream: LF-terminated (CR LF accepted), TAB-separated lines whose first field is the line type [?]:
``DATAH`` lists the column labels, ``DATA`` carries values in that order. Columns are found by
the most recent header, never by position; until a header arrives :data:`DEFAULT_HEADER` (what the
emulated instrument writes) is assumed. Lines starting with ``<`` (XML replies to configuration
commands) are skipped; any other line is counted as malformed.

Labels -> channels (labels believed [?]): ``CH4D`` ch4 [mmol m-3], ``CH4`` ch4_mf [umol mol-1],
``TEMP`` temperature [degC], ``PRESSURE`` pressure [kPa], ``RSSI`` rssi [%] (also
``signal_strength``), ``DIAG`` diag (int64, -1 when absent), ``DROPRATE`` drop_rate [%?],
``MSEC`` msec [ms], ``SECONDS`` + ``NANOSECONDS`` time [s since 1970, UTC]. Missing labels -> NaN.
The SDM minimum set (CH4D, pressure, temperature, diagnostic, RSSI) is verified [V].

DIAG (16 bit, set = condition present) [V] for the upper 12 bits: 32768 not_ready, 16384 no_signal,
8192 ref_unlocked, 4096 bad_temp, 2048 laser_temp_unregulated, 1024 block_temp_unregulated,
512 motor_spinning, 256 pump_on, 128 top_heater_on, 64 bottom_heater_on, 32 calibrating,
16 motor_failure; lower 4 bits [?]: 8 bad_aux_tc3, 4 bad_aux_tc2, 2 bad_aux_tc1, 1 box_connected
(a state). Heaters, pump and spin motor are states, but records during mirror cleaning and
calibration are blanked (EddyPro), see :func:`valid`.

Counter gaps: the stream has no record counter, so jumps of SECONDS + NANOSECONDS other than one
sample period count as gaps (``samples_missed`` = periods - 1); the period is ``1 / rate_hz`` when
the parser is given the rate, else estimated from the time stamps (see :class:`Parser`).
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from firmware_bridge import device, licor
from firmware_bridge.frames import Batch, ParseStats, complete_lines
from firmware_bridge.turbulence import R_J_MOL_K

NAME = "li7700"
ROLE = "gas"
TRANSPORT = "tcp"
DEFAULT_TCP_PORT = 7700
MAX_LINE_BYTES = 2048
MISSING = -1

RECORD_COUNTER = None  # its MSEC clock is no record counter
CHANNELS = ("time", "msec", "diag", "ch4", "ch4_mf", "temperature", "pressure", "rssi", "signal_strength",
            "drop_rate")
UNITS = {"time": "s since 1970-01-01 UTC", "msec": "ms", "diag": "DIAG bit field", "ch4": "mmol m-3",
         "ch4_mf": "umol mol-1", "temperature": "degC", "pressure": "kPa", "rssi": "%", "signal_strength": "%",
         "drop_rate": "%"}
#: The step of each float channel (:mod:`firmware_bridge.resolution`): LI-COR's 8 significant digits
#: (RSSI, the signal strength, is sent as text too).
RESOLUTION = {**licor.resolution(CHANNELS), "signal_strength": licor.SIGNIFICANT}
#: Header labels -> channels (SECONDS/NANOSECONDS are combined into ``time``).
LABELS = {"MSEC": "msec", "DIAG": "diag", "CH4D": "ch4", "CH4": "ch4_mf", "TEMP": "temperature",
          "PRESSURE": "pressure", "RSSI": "rssi", "DROPRATE": "drop_rate"}
#: The header assumed before a ``DATAH`` line arrives, and the one the emulated instrument writes.
DEFAULT_HEADER = ("MSEC", "SECONDS", "NANOSECONDS", "DIAG", "CH4D", "CH4", "TEMP", "PRESSURE", "RSSI", "DROPRATE")
FLAG_BITS = {"not_ready": 15, "no_signal": 14, "ref_unlocked": 13, "bad_temp": 12, "laser_temp_unregulated": 11,
             "block_temp_unregulated": 10, "motor_spinning": 9, "pump_on": 8, "top_heater_on": 7,
             "bottom_heater_on": 6, "calibrating": 5, "motor_failure": 4, "bad_aux_tc3": 3, "bad_aux_tc2": 2,
             "bad_aux_tc1": 1, "box_connected": 0}
#: Conditions that invalidate a record (measurement impossible or mirror being cleaned).
INVALIDATING = ("not_ready", "no_signal", "ref_unlocked", "bad_temp", "laser_temp_unregulated", "calibrating",
                "motor_spinning", "pump_on")
INVALID_MASK = sum(1 << FLAG_BITS[name] for name in INVALIDATING)
#: Period estimate from time stamps: median of this many recent steps, used once this many are seen.
PERIOD_WINDOW = 64
PERIOD_MIN_STEPS = 8
#: Records with RSSI below this [%] are invalid: our choice within the typical 10-20 % QC
#: thresholds of section 5 [?].
RSSI_MIN_PCT = 20.0


def decode_flags(diag: np.ndarray) -> dict[str, np.ndarray]:
    """The 16 DIAG bits by name (True = condition present; a missing diag, -1, raises every flag)."""
    diag = np.asarray(diag, dtype=np.int64)
    missing = diag < 0
    return {name: ((diag >> bit) & 1 == 1) | missing for name, bit in FLAG_BITS.items()}


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Samples with none of :data:`INVALIDATING` set, RSSI >= :data:`RSSI_MIN_PCT` and finite ``ch4``
    (channels absent from ``columns`` are not checked)."""
    diag = np.asarray(columns["diag"], dtype=np.int64)
    ok = (diag >= 0) & (diag & INVALID_MASK == 0)
    if "rssi" in columns:
        with np.errstate(invalid="ignore"):
            ok &= np.asarray(columns["rssi"], dtype=float) >= RSSI_MIN_PCT
    if "ch4" in columns:
        ok &= np.isfinite(np.asarray(columns["ch4"], dtype=float))
    return ok


class Parser:
    """Streaming LI-7700 parser: ``feed(bytes) -> Batch``; never raises on input bytes.

    ``header``: labels assumed until a ``DATAH`` line arrives; ``rate_hz``: the output rate for gap
    counting from the instrument's time stamps; without it the sample period is the median of the
    last :data:`PERIOD_WINDOW` positive time steps (gaps are counted once :data:`PERIOD_MIN_STEPS`
    steps have been seen).
    """

    family = NAME

    def __init__(self, header: tuple[str, ...] = DEFAULT_HEADER, rate_hz: float | None = None) -> None:
        self.rate_hz = rate_hz
        self._slot = {name: i for i, name in enumerate(CHANNELS)}
        self._set_header(tuple(header))
        self._buf = b""
        self._last_time: float | None = None
        self._recent_dt = np.zeros(0)
        self.stats = ParseStats()

    def _set_header(self, header: tuple[str, ...]) -> None:
        self.header = header
        self._map = [(i + 1, self._slot[LABELS[h]]) for i, h in enumerate(header) if h in LABELS]
        self._sec = header.index("SECONDS") + 1 if "SECONDS" in header else None
        self._nsec = header.index("NANOSECONDS") + 1 if "NANOSECONDS" in header else None

    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        lines, self._buf = complete_lines(buf, self.stats, MAX_LINE_BYTES)
        rows: list[list[float]] = []
        ends: list[int] = []
        pos = 0
        for line in lines:
            pos += len(line) + 1
            row = self._parse_line(line.strip(b"\r \x00"))
            if row is not None:
                rows.append(row)
                ends.append(pos - carried)
        if not rows:
            return Batch({c: np.zeros(0, np.int64 if c == "diag" else np.float64) for c in CHANNELS},
                         np.zeros(0, np.int64))
        return self._batch(np.array(rows, dtype=float), np.array(ends, dtype=np.int64))

    def _parse_line(self, line: bytes) -> list[float] | None:
        if not line or line.startswith(b"<"):
            return None
        fields = line.split(b"\t")
        kind = fields[0].strip()
        if kind == b"DATAH":
            labels = tuple(f.strip().decode("ascii", "replace") for f in fields[1:])
            if not labels or not all(label.isidentifier() for label in labels):
                self.stats.malformed += 1
                return None
            self._set_header(labels)
            return None
        if kind != b"DATA" or len(fields) != len(self.header) + 1:
            self.stats.malformed += 1
            return None
        row = [np.nan] * len(CHANNELS)
        try:
            for i, slot in self._map:
                row[slot] = float(fields[i])
            if self._sec is not None:
                ns = float(fields[self._nsec]) if self._nsec is not None else 0.0
                row[0] = float(fields[self._sec]) + ns * 1e-9
        except ValueError:
            self.stats.malformed += 1
            return None
        return row

    def _batch(self, table: np.ndarray, ends: np.ndarray) -> Batch:
        cols = {name: table[:, i] for i, name in enumerate(CHANNELS)}
        d = cols["diag"]
        ok = np.isfinite(d) & (d >= 0) & (d < 2**62)
        cols["diag"] = np.where(ok, np.nan_to_num(d), MISSING).astype(np.int64)
        cols["signal_strength"] = cols["rssi"].copy()
        self._check_time(cols["time"])
        self.stats.frames_ok += len(table)
        self.stats.nan_records += int(np.isnan(cols["ch4"]).sum())
        return Batch(cols, ends)

    def _check_time(self, t: np.ndarray) -> None:
        seen = t[np.isfinite(t)]
        if len(seen) == 0:
            return
        seq = seen if self._last_time is None else np.concatenate(([self._last_time], seen))
        self._last_time = float(seen[-1])
        dt = np.diff(seq)
        if self.rate_hz:
            period = 1.0 / self.rate_hz
        else:
            self._recent_dt = np.concatenate((self._recent_dt, dt[dt > 0]))[-PERIOD_WINDOW:]
            if len(self._recent_dt) < PERIOD_MIN_STEPS:
                return
            period = float(np.median(self._recent_dt))
        steps = np.round(dt / period)
        gaps = steps != 1
        self.stats.counter_gaps += int(gaps.sum())
        self.stats.samples_missed += int(np.clip(steps[gaps] - 1, 0, 2**31).sum())


def command_start(rate_hz: float) -> bytes:
    """Nothing: the LI-7700 streams its DATAH/DATA lines to whoever connects, at the rate set in its
    XML configuration (section 5). The XML element names for the output rate are not in our
    sources, so the driver sends no configuration and parses by the header it receives."""
    return b""


def _number(x: float) -> str:
    return "nan" if x != x else f"{x:.7g}"


class Device(device.Device):
    """An emulated LI-7700 on a TCP socket: :meth:`banner` is the ``DATAH`` line a client receives on
    connecting, :meth:`frames` one ``DATA`` line per sample in the order of ``header``.

    Observations used: ``ch4`` [mmol m-3] (when absent, a background of :data:`CH4_BACKGROUND_UMOL_MOL`
    at the observed temperature and pressure), ``temperature`` [degC], ``pressure`` [kPa] and
    optionally ``ch4_diag`` (replaces DIAG 0). ``CH4`` is the mole fraction per mole of moist air
    (the LI-7700 does not measure H2O [?]). Time stamps: :data:`EPOCH_S` + sample number / rate.
    Conditions (section 9, "LI-7700 RSSI drop"): rain -> RSSI 5 %, low_signal -> RSSI 12 %,
    obstruction -> RSSI 0 % and no_signal set (the beam is blocked). XML commands are ignored.
    """

    family = NAME
    command_terminator = b"\n"
    EPOCH_S = 1_700_000_000
    RSSI_CLEAN_PCT = 65.0
    CH4_BACKGROUND_UMOL_MOL = 1.95
    CONDITION_RSSI = MappingProxyType({"rain": 5.0, "low_signal": 12.0, "obstruction": 0.0})

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = None,
                 header: tuple[str, ...] = DEFAULT_HEADER) -> None:
        super().__init__(rate_hz, seed, baud)
        self.header = tuple(header)

    def banner(self) -> bytes:
        return ("DATAH\t" + "\t".join(self.header) + "\n").encode("ascii")

    def frames(self, obs: dict[str, np.ndarray], first_index: int) -> list[bytes]:
        n = len(np.atleast_1d(obs.get("ch4", obs["temperature"])))
        t_c = np.broadcast_to(np.asarray(obs["temperature"], dtype=float), (n,))
        p_kpa = np.broadcast_to(np.asarray(obs["pressure"], dtype=float), (n,))
        n_total = p_kpa * 1e3 / (R_J_MOL_K * (t_c + 273.15))  # mol m-3
        ch4 = np.asarray(obs["ch4"], dtype=float) if "ch4" in obs else self.CH4_BACKGROUND_UMOL_MOL * n_total * 1e-3
        diag = np.broadcast_to(np.asarray(obs.get("ch4_diag", 0), dtype=np.int64), (n,)).copy()
        rssi = self.RSSI_CLEAN_PCT + 0.5 * self.rng.standard_normal(n)
        if self.condition in self.CONDITION_RSSI:
            rssi[:] = self.CONDITION_RSSI[self.condition]
            if self.condition == "obstruction":
                diag |= 1 << FLAG_BITS["no_signal"]
        index = first_index + np.arange(n)
        ns_total = index * round(1e9 / self.rate_hz)
        values = {"MSEC": [str(int(i * 1000 // self.rate_hz)) for i in index],
                  "SECONDS": [str(self.EPOCH_S + int(x) // 10**9) for x in ns_total],
                  "NANOSECONDS": [str(int(x) % 10**9) for x in ns_total],
                  "DIAG": [str(int(d)) for d in diag],
                  "CH4D": [_number(x) for x in ch4], "CH4": [_number(x) for x in ch4 / n_total * 1e3],
                  "TEMP": [_number(x) for x in t_c], "PRESSURE": [_number(x) for x in p_kpa],
                  "RSSI": [_number(x) for x in rssi], "DROPRATE": ["0"] * n}
        cols = [values.get(label, ["0"] * n) for label in self.header]
        return [("DATA\t" + "\t".join(col[i] for col in cols) + "\n").encode("ascii") for i in range(n)]

    def corrupt(self, frame: bytes) -> bytes:
        """No checksum: damage the ``CH4D`` value (a ``#`` after its first character), so the parser
        rejects the line as malformed."""
        fields = frame.split(b"\t")
        k = self.header.index("CH4D") + 1 if "CH4D" in self.header else len(fields) // 2
        if k < len(fields) and fields[k]:
            fields[k] = fields[k][:1] + b"#" + fields[k][1:]
        return b"\t".join(fields)

    def reply(self, command: bytes) -> bytes:
        """XML configuration (``<TAG>value</TAG>``) is accepted and ignored."""
        return b""


def encode_observation(obs: dict[str, np.ndarray], first_index: int, labels: bool = True) -> bytes:
    """``DATA`` lines for an observation block (kept for callers not yet using ``Device.frames``);
    the header line is prepended for the block starting at sample 0."""
    dev = Device()
    head = dev.banner() if first_index == 0 else b""
    return head + b"".join(dev.frames(obs, first_index))
