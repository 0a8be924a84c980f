"""LI-COR LI-7500 family (LI-7500, LI-7500A/RS/DS) open-path CO2/H2O analysers, text output.

Records are LF-terminated lines, either labelled S-expressions (``Labels TRUE``, the default)::

    (Data (Ndx 1545)(DiagVal 250)(CO2D 3.2183277e1)(H2OD 1.9687008e2)(Temp 2.4e1)(Pres 9.86e1))

or TAB-separated values in the order of the enabled outputs (``Labels FALSE``), which the driver
must then know from the ``Outputs`` block it sent. Diagnostic value: bits 0-3 signal strength code
(x 6.67 %; on the original LI-7500 an AGC code x 6.25 %), bits 4-7 Sync, PLL, Detector, Chopper OK.
Source: LI-7200RS manual App. D, LI-COR tech tip "Interpreting Diagnostic Values" (see
shared/reference/instruments.md section 4).
"""

from __future__ import annotations

import re

import numpy as np

from firmware_bridge.frames import Batch, ParseStats

CHANNELS = ("index", "diag", "co2", "h2o", "temperature", "pressure", "signal_strength")
UNITS = {"index": "record index", "diag": "diagnostic value", "co2": "mmol m-3", "h2o": "mmol m-3",
         "temperature": "degC", "pressure": "kPa", "signal_strength": "%"}
#: Labels in the instrument's output -> our channel names.
LABELS = {"Ndx": "index", "DiagVal": "diag", "CO2D": "co2", "H2OD": "h2o", "Temp": "temperature",
          "Pres": "pressure"}
#: Default column order of TAB-separated output (the order :func:`command_outputs` enables).
DEFAULT_COLUMNS = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres")
OK_BITS = {"sync_ok": 4, "pll_ok": 5, "detector_ok": 6, "chopper_ok": 7}
MAX_LINE_BYTES = 2048

_PAIR = re.compile(rb"\((\w+) ([^()]*)\)")


def signal_strength_pct(diag: np.ndarray, model: str = "li7500a") -> np.ndarray:
    """Signal strength [%] from diagnostic bits 0-3: code x 6.67 (LI-7500A/RS/DS), or the AGC
    value code x 6.25 for the original LI-7500 (high AGC = dirty window, the opposite sense)."""
    code = np.asarray(diag, dtype=np.int64) & 0xF
    return code * (6.25 if model == "li7500" else 6.67)


def decode_flags(diag: np.ndarray) -> dict[str, np.ndarray]:
    """Bits 4-7 of the diagnostic value as booleans (True = subsystem OK)."""
    diag = np.asarray(diag, dtype=np.int64)
    return {name: (diag >> bit) & 1 == 1 for name, bit in OK_BITS.items()}


class Parser:
    """Streaming LI-7500 text parser: ``feed(bytes) -> Batch``; never raises on input bytes.

    ``columns`` names the TAB-separated layout (instrument labels); labelled records carry their
    own names and are parsed whatever the setting.
    """

    family = "li7500"

    def __init__(self, model: str = "li7500a", columns: tuple[str, ...] = DEFAULT_COLUMNS) -> None:
        self.model = model
        self.columns = columns
        self._buf = b""
        self._last_index: int | None = None
        self.stats = ParseStats()

    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > MAX_LINE_BYTES:  # no LF for far too long: garbage
            self.stats.resyncs += 1
            self.stats.bytes_skipped += len(self._buf)
            self._buf = b""
        rows: list[tuple[float, ...]] = []
        ends: list[int] = []
        pos = 0
        for line in lines:
            pos += len(line) + 1
            values = self._parse_line(line.strip(b"\r \x00"))
            if values is not None:
                rows.append(values)
                ends.append(pos - carried)
        if not rows:
            return Batch.empty(CHANNELS)
        table = np.array(rows, dtype=float)
        cols = {name: table[:, i] for i, name in enumerate(CHANNELS[:-1])}
        cols["index"] = np.nan_to_num(cols["index"], nan=-1).astype(np.int64)
        diag = np.nan_to_num(cols["diag"], nan=0).astype(np.int64)
        cols["diag"] = diag
        cols["signal_strength"] = signal_strength_pct(diag, self.model)
        self._check_index(cols["index"])
        self.stats.frames_ok += len(rows)
        self.stats.nan_records += int(np.isnan(table[:, 2:4]).any(axis=1).sum())
        return Batch(cols, np.array(ends, dtype=np.int64))

    def _parse_line(self, line: bytes) -> tuple[float, ...] | None:
        if not line:
            return None
        if b"(Data" in line:
            start = line.index(b"(Data")
            if start:
                self.stats.resyncs += 1
                self.stats.bytes_skipped += start
            found = {LABELS[k.decode()]: v for k, v in _PAIR.findall(line[start:]) if k.decode() in LABELS}
            if "co2" not in found and "h2o" not in found:
                self.stats.malformed += 1
                return None
        else:
            fields = line.split(b"\t")
            if len(fields) != len(self.columns):
                self.stats.malformed += 1
                return None
            found = {LABELS[k]: v for k, v in zip(self.columns, fields, strict=True) if k in LABELS}
        try:
            return tuple(float(found[name]) if name in found else np.nan for name in CHANNELS[:-1])
        except ValueError:
            self.stats.malformed += 1
            return None

    def _check_index(self, index: np.ndarray) -> None:
        valid = index[index >= 0]
        if len(valid) == 0:
            return
        seq = valid if self._last_index is None else np.concatenate(([self._last_index], valid))
        step = np.diff(seq)
        gaps = step != 1
        self.stats.counter_gaps += int(gaps.sum())
        self.stats.samples_missed += int(np.clip(step[gaps] - 1, 0, None).sum())
        self._last_index = int(valid[-1])


def _licor_number(x: float) -> str:
    """LI-COR's float style: 3.2183277e1 (no plus sign, no exponent padding)."""
    if x != x:
        return "nan"
    mantissa, exp = f"{x:.7e}".split("e")
    return f"{mantissa}e{int(exp)}"


def encode(index: np.ndarray, diag: np.ndarray, co2: np.ndarray, h2o: np.ndarray,
           temperature: np.ndarray, pressure: np.ndarray, labels: bool = True) -> bytes:
    """Records as the instrument sends them (labelled or TAB-separated, LF-terminated)."""
    out = []
    for values in zip(index, diag, co2, h2o, temperature, pressure, strict=True):
        ndx, dv = int(values[0]), int(values[1])
        nums = [_licor_number(float(x)) for x in values[2:]]
        if labels:
            out.append(f"(Data (Ndx {ndx})(DiagVal {dv})(CO2D {nums[0]})(H2OD {nums[1]})"
                       f"(Temp {nums[2]})(Pres {nums[3]}))\n")
        else:
            out.append("\t".join([str(ndx), str(dv), *nums]) + "\n")
    return "".join(out).encode("ascii")


def command_outputs(freq_hz: int, labels: bool = True, bandwidth_hz: int = 10) -> bytes:
    """The ``Outputs`` block that enables :data:`DEFAULT_COLUMNS` on RS-232 at ``freq_hz``."""
    flag = "TRUE" if labels else "FALSE"
    return (f"(Outputs(BW {bandwidth_hz})(RS232(Freq {freq_hz})(Labels {flag})(Ndx TRUE)(DiagVal TRUE)"
            f"(CO2D TRUE)(H2OD TRUE)(Temp TRUE)(Pres TRUE)))\n").encode("ascii")


ROLE = "gas"
DEFAULT_BAUD = 115200
#: All OK (bits 4-7) with signal strength code 15 (100 %).
DIAG_ALL_OK = 0xFF


def encode_observation(obs: dict[str, np.ndarray], first_index: int, labels: bool = True) -> bytes:
    """Records for an observation block (``co2``, ``h2o`` [mmol m-3], ``temperature`` [degC],
    ``pressure`` [kPa]); optional ``gas_diag`` overrides the all-OK diagnostic value."""
    n = len(obs["co2"])
    diag = np.broadcast_to(obs.get("gas_diag", DIAG_ALL_OK), (n,))
    return encode(first_index + np.arange(n), diag, obs["co2"], obs["h2o"], obs["temperature"],
                  obs["pressure"], labels=labels)


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Samples whose Sync, PLL, Detector and Chopper bits (4-7) all report OK."""
    return np.asarray(columns["diag"], dtype=np.int64) & 0xF0 == 0xF0
