"""The LI-COR LI-7550 text grammar shared by the LI-7500 family and the LI-7200 family.

Source for everything here unless marked otherwise: LI-7200RS manual App. D "Configuration
grammar", LI-COR tech tip "Interpreting Diagnostic Values" (shared/reference/instruments.md
section 4).

Records (data from the analyser) are LF-terminated lines (``EOL "0D0A"`` gives CR LF; both are
accepted), in one of two forms:

- ``Labels TRUE`` (the default): an S-expression of ``(Label value)`` pairs::

      (Data (Ndx 1545)(DiagVal 250)(CO2D 3.2183277e1)(H2OD 1.9687008e2)(Temp 2.4e1)(Pres 9.86e1))

  Labels name themselves, so any subset in any order parses. Several ``(Data ...)`` records on one
  line are all decoded; other S-expressions after a record (an LI-7550 with an LI-7700 or a sonic
  attached appends ``(CH4Data ...)`` / ``(SonicData ...)``) and lines holding other S-expressions
  (command replies, ``(Diagnostics ...)`` records) are skipped without being counted.
- ``Labels FALSE``: values only, TAB-separated, in the order of the enabled outputs; the parser
  must be told that order (``columns``), which is why the driver always (re)sends its own
  ``(Outputs ...)`` block at connect (:func:`command_outputs`). The emulated instrument writes
  enabled outputs in one fixed order (its ``ORDER``), whatever the order of the command **[?]**.

Parser bookkeeping (:class:`frames.ParseStats`; there is no checksum, so ``checksum_errors`` stays 0):

- ``malformed``: a ``(Data`` that does not close into well-formed pairs (truncated, damaged), a
  record whose mapped value is not a number, a record with no gas channel at all, a TAB line whose
  field count differs from ``columns`` or whose mapped field is not a number, any other line;
- ``resyncs`` / ``bytes_skipped``: bytes in front of a record's ``(Data`` on its line, and a line
  that grew past :data:`MAX_LINE_BYTES` without an LF (dropped, so the buffer stays bounded);
- ``counter_gaps`` / ``samples_missed``: jumps of the ``Ndx`` record index (step != 1);
- ``nan_records``: decoded records with a NaN ``co2`` or ``h2o``.

Missing labels decode to NaN; ``index`` and ``diag`` are int64 with :data:`MISSING` (-1) when absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from firmware_bridge import device
from firmware_bridge.frames import Batch, CounterTracker, ParseStats, complete_lines
from firmware_bridge.turbulence import R_J_MOL_K

#: Serial settings of the LI-7550 RS-232 port: 115200 is the common setting [?]; the original
#: LI-7500 (no LI-7550) ran 19200 8N1 in NCAR deployments [S] (instruments.md section 4, Transport).
DEFAULT_BAUD = 115200
BAUDS = (9600, 19200, 38400, 57600, 115200)
#: Longest line kept while waiting for its LF; a longer one is garbage and dropped.
MAX_LINE_BYTES = 2048
#: ``index`` / ``diag`` value of a record that did not report them.
MISSING = -1
#: Signal strength [%] per code of diagnostic bits 0-3 (LI-7500A/RS/DS, LI-7200/RS), and the AGC
#: [%] per code of the original LI-7500, whose sense is opposite (high AGC = dirty window).
SS_PCT_PER_CODE = 6.67
AGC_PCT_PER_CODE = 6.25
#: LI-COR writes floats with 8 significant digits (:func:`licor_number`, as the manual's records).
SIGNIFICANT = ".8g"


def resolution(channels: tuple[str, ...]) -> dict[str, str]:
    """A LI-COR family's ``RESOLUTION``: its float channels at 8 significant digits, the signal
    strength decoded from the diagnostic value (a code times 6.67 or 6.25 %) at 2 decimals."""
    steps = {c: SIGNIFICANT for c in channels if c not in ("index", "diag", "time", "msec")}
    if "signal_strength" in steps:
        steps["signal_strength"] = ".2f"
    return steps
#: ``signal_low`` when signal strength falls below this [%]. Our choice, in the spirit of EasyFlux's
#: 70 % signal-strength screen; the LI-7500DS raises its own DIRT bit below 80 (section 4). Codes
#: 0-10 (<= 66.7 %) are low, 11-15 (>= 73.4 %) are not.
SIGNAL_LOW_PCT = 70.0
#: Original LI-7500: ``signal_low`` when AGC exceeds this [%] (AGC rises towards 100 % as the windows
#: get dirty or wet; clean windows read about 50-65 %) **[?]**, so codes 13-15 are low.
AGC_HIGH_PCT = 75.0
#: Bits 4-7 of the diagnostic value, 1 = subsystem OK (all models); decoded with True = fault.
OK_BITS_CORE = {"sync_fault": 4, "pll_fault": 5, "detector_fault": 6, "chopper_fault": 7}

_DATA = re.compile(rb"\(Data\s*((?:\(\w+ [^()]*\)\s*)*)\)")
_PAIR = re.compile(rb"\((\w+) ([^()]*)\)")


def empty_batch(channels: tuple[str, ...], integer: tuple[str, ...] = ("index", "diag")) -> Batch:
    """A Batch of no records whose ``integer`` channels are int64, like decoded ones."""
    return Batch({c: np.zeros(0, np.int64 if c in integer else np.float64) for c in channels},
                 np.zeros(0, np.int64))


def signal_strength_pct(diag: np.ndarray, agc: bool = False) -> np.ndarray:
    """Signal strength [%] from diagnostic bits 0-3: code x 6.67, or for the original LI-7500
    (``agc=True``) the AGC value code x 6.25 (section 4, "Diagnostic value bit maps"). NaN where
    ``diag`` is :data:`MISSING`."""
    diag = np.asarray(diag, dtype=np.int64)
    pct = (diag & 0xF) * (AGC_PCT_PER_CODE if agc else SS_PCT_PER_CODE)
    return np.where(diag < 0, np.nan, pct)


def signal_low(signal_strength: np.ndarray, agc: bool = False) -> np.ndarray:
    """True where the optical signal is poor: signal strength < :data:`SIGNAL_LOW_PCT`, or for the
    original LI-7500 AGC > :data:`AGC_HIGH_PCT`; NaN counts as low."""
    ss = np.asarray(signal_strength, dtype=float)
    with np.errstate(invalid="ignore"):
        return ~(ss <= AGC_HIGH_PCT) if agc else ~(ss >= SIGNAL_LOW_PCT)


def decode_ok_bits(diag: np.ndarray, ok_bits: dict[str, int], agc: bool = False) -> dict[str, np.ndarray]:
    """Flags of an LI-COR diagnostic value, True = problem: each ``ok_bits`` bit that is 0 (the bits
    report "OK" when 1), plus ``signal_low`` from bits 0-3. A missing diag (-1) raises every flag."""
    diag = np.asarray(diag, dtype=np.int64)
    missing = diag < 0
    flags = {name: ((diag >> bit) & 1 == 0) | missing for name, bit in ok_bits.items()}
    flags["signal_low"] = signal_low(signal_strength_pct(diag, agc), agc)
    return flags


def valid_ok_bits(columns: dict[str, np.ndarray], ok_mask: int, agc: bool = False) -> np.ndarray:
    """Samples whose diagnostic value has every ``ok_mask`` bit set and no ``signal_low`` from the
    code in bits 0-3 (our choice, like the 0.7 signal-strength screen of EasyFlux-style programs [?];
    EddyPro instead acts per bit, section 4), and finite ``co2`` and ``h2o`` (both are needed for the
    WPL terms); channels absent from ``columns`` are not checked."""
    diag = np.asarray(columns["diag"], dtype=np.int64)
    ok = (diag >= 0) & (diag & ok_mask == ok_mask) & ~signal_low(signal_strength_pct(diag, agc), agc)
    for name in ("co2", "h2o"):
        if name in columns:
            ok &= np.isfinite(np.asarray(columns[name], dtype=float))
    return ok


class Parser:
    """Streaming LI-7550 text parser: ``feed(bytes) -> Batch``; never raises on input bytes.

    ``labels`` maps instrument labels to channel names; when several labels feed one channel the
    first one listed wins. ``columns`` is the TAB layout (instrument labels, unknown ones allowed
    and ignored). ``agc``: bits 0-3 are an AGC code (original LI-7500). ``signal_strength`` comes
    from a signal-strength label when the record has one, else from the diagnostic value.
    """

    family = ""

    def __init__(self, labels: dict[str, str], channels: tuple[str, ...], columns: tuple[str, ...],
                 agc: bool = False) -> None:
        self.channels = channels
        self.columns = tuple(columns)
        self.agc = agc
        self._slot = {name: i for i, name in enumerate(channels)}
        #: label (bytes) -> (priority, slot)
        self._labels = {k.encode("ascii"): (rank, self._slot[v]) for rank, (k, v) in enumerate(labels.items())}
        self._tab = [(i, self._labels[c.encode("ascii")][1]) for i, c in enumerate(self.columns)
                     if c.encode("ascii") in self._labels]
        self._gas = [self._slot[c] for c in ("co2", "h2o", "co2_mf", "h2o_mf") if c in self._slot]
        self._buf = b""
        self.stats = ParseStats()
        self._index = CounterTracker(self.stats)

    def feed(self, data: bytes) -> Batch:
        buf = self._buf + bytes(data)
        carried = len(self._buf)
        lines, self._buf = complete_lines(buf, self.stats, MAX_LINE_BYTES)
        rows: list[list[float]] = []
        ends: list[int] = []
        pos = 0
        for line in lines:
            pos += len(line) + 1
            n_before = len(rows)
            self._parse_line(line.strip(b"\r \x00"), rows)
            ends.extend([pos - carried] * (len(rows) - n_before))
        if not rows:
            return empty_batch(self.channels)
        return self._batch(np.array(rows, dtype=float), np.array(ends, dtype=np.int64))

    # -- one line -----------------------------------------------------------------------------
    def _parse_line(self, line: bytes, rows: list[list[float]]) -> None:
        if not line:
            return
        starts = line.count(b"(Data")
        if starts:
            lead = line.find(b"(Data")
            if lead:
                self.stats.resyncs += 1
                self.stats.bytes_skipped += lead
            for match in _DATA.finditer(line):
                row = self._labelled(match.group(1))
                if row is not None:
                    rows.append(row)
                starts -= 1
            self.stats.malformed += max(starts, 0)
        elif line.startswith(b"("):
            return  # another S-expression (a reply, a (Diagnostics ...) record): not data
        else:
            row = self._tab_line(line)
            if row is not None:
                rows.append(row)

    def _labelled(self, body: bytes) -> list[float] | None:
        row = [np.nan] * len(self.channels)
        rank = [len(self._labels)] * len(self.channels)
        try:
            for key, value in _PAIR.findall(body):
                hit = self._labels.get(key)
                if hit is not None and hit[0] < rank[hit[1]]:
                    row[hit[1]] = float(value)
                    rank[hit[1]] = hit[0]
        except ValueError:
            self.stats.malformed += 1
            return None
        if all(rank[i] == len(self._labels) for i in self._gas):
            self.stats.malformed += 1
            return None
        return row

    def _tab_line(self, line: bytes) -> list[float] | None:
        fields = line.split(b"\t")
        if len(fields) != len(self.columns):
            self.stats.malformed += 1
            return None
        row = [np.nan] * len(self.channels)
        try:
            for i, slot in self._tab:
                row[slot] = float(fields[i])
        except ValueError:
            self.stats.malformed += 1
            return None
        return row

    # -- a batch of rows ----------------------------------------------------------------------
    def _batch(self, table: np.ndarray, ends: np.ndarray) -> Batch:
        cols = {name: table[:, i] for i, name in enumerate(self.channels)}
        for name in ("index", "diag"):
            x = cols[name]
            ok = np.isfinite(x) & (x >= 0) & (x < 2**62)
            cols[name] = np.where(ok, np.nan_to_num(x), MISSING).astype(np.int64)
        ss = cols["signal_strength"]
        cols["signal_strength"] = np.where(np.isfinite(ss), ss, signal_strength_pct(cols["diag"], self.agc))
        self._index.update(cols["index"][cols["index"] >= 0])
        self.stats.frames_ok += len(table)
        gas = [cols[c] for c in ("co2", "h2o") if c in cols]
        if gas:
            self.stats.nan_records += int(np.any([np.isnan(g) for g in gas], axis=0).sum())
        return Batch(cols, ends)


# -- commands ---------------------------------------------------------------------------------
def command_outputs(columns: tuple[str, ...], freq_hz: float, labels: bool = True, bandwidth_hz: int = 10,
                    eol: str = "0D0A") -> bytes:
    """An ``(Outputs ...)`` block enabling ``columns`` on RS-232 at ``freq_hz`` with the given
    bandwidth and end of line (grammar and the ``EOL "0D0A"`` form: section 4, Command grammar)."""
    freq = f"{freq_hz:g}"
    items = "".join(f"({c} TRUE)" for c in columns)
    return (f'(Outputs(BW {bandwidth_hz})(RS232(Freq {freq})(EOL "{eol}")(Labels {"TRUE" if labels else "FALSE"})'
            f"{items}))\n").encode("ascii")


def _block(text: bytes, name: bytes) -> bytes | None:
    """The balanced S-expression ``(name ...)`` inside ``text``, or None."""
    m = re.search(rb"\(\s*" + re.escape(name) + rb"[\s(]", text)
    if m is None:
        return None
    depth = 0
    for i in range(m.start(), len(text)):
        c = text[i]
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return text[m.start():i + 1]
    return None


@dataclass
class OutputsCommand:
    """What an ``(Outputs ...)`` command sets; None / empty where the command is silent.

    ``outputs`` holds the ``(Label TRUE|FALSE)`` switches of its ``RS232`` block.
    """

    bandwidth_hz: float | None = None
    freq_hz: float | None = None
    labels: bool | None = None
    eol: bytes | None = None
    outputs: dict[str, bool] = field(default_factory=dict)

    def apply(self, enabled: tuple[str, ...], order: tuple[str, ...]) -> tuple[str, ...]:
        """The outputs enabled after this command on an instrument that had ``enabled`` on and
        writes outputs in the fixed order ``order`` (labels it cannot produce are ignored)."""
        now = set(enabled)
        for label, on in self.outputs.items():
            if label in order:
                if on:
                    now.add(label)
                else:
                    now.discard(label)
        return tuple(label for label in order if label in now)


def parse_outputs(command: bytes) -> OutputsCommand | None:
    """The settings of an ``(Outputs ...)`` command (section 4, Command grammar), or None for any
    other command. Only the ``RS232`` block's switches are read (``BW`` at the top level)."""
    outputs = _block(command, b"Outputs")
    if outputs is None:
        return None
    found = OutputsCommand()
    top = re.search(rb"\(BW\s+([0-9.]+)\s*\)", outputs)
    if top:
        found.bandwidth_hz = float(top.group(1))
    rs232 = _block(outputs, b"RS232")
    if rs232 is None:
        return found
    for key, value in re.findall(rb'\((\w+)\s+("[^"]*"|[^()\s]+)\s*\)', rs232[1:]):
        k, v = key.decode("ascii"), value.strip(b'"')
        if k == "Freq":
            try:
                found.freq_hz = float(v)
            except ValueError:
                pass
        elif k == "EOL":
            try:
                found.eol = bytes.fromhex(v.decode("ascii"))
            except ValueError:
                pass
        elif v.upper() in (b"TRUE", b"FALSE"):
            if k == "Labels":
                found.labels = v.upper() == b"TRUE"
            else:
                found.outputs[k] = v.upper() == b"TRUE"
    return found


def tab_columns(command: bytes, order: tuple[str, ...], current: tuple[str, ...]) -> tuple[str, ...]:
    """The TAB layout after ``command`` (an ``(Outputs ...)`` block) on an instrument whose enabled
    outputs were ``current`` and which writes outputs in the fixed order ``order``."""
    settings = parse_outputs(command)
    return settings.apply(current, order) if settings else tuple(c for c in order if c in current)


def licor_number(x: float) -> str:
    """LI-COR's float style, as in the manual record: 3.2183277e1 (8 significant digits, no plus
    sign, no exponent padding); NaN as ``nan``."""
    if x != x:
        return "nan"
    mantissa, exp = f"{x:.7e}".split("e")
    return f"{mantissa}e{int(exp)}"


# -- emulator side ----------------------------------------------------------------------------
class Device(device.Device):
    """An analyser behind an LI-7550 on RS-232. Subclasses set ``ORDER`` (every output the emulated
    instrument can write, in the order it writes them), ``INTEGER`` labels, ``DEFAULT_OUTPUTS``,
    ``DIAG_ALL_OK``, ``CONDITION_CODES`` and implement :meth:`values`.

    ``reply`` accepts ``(Outputs ...)`` (LF-terminated, CR LF fine): switches in its ``RS232``
    block enable/disable outputs this device can produce (others are ignored), ``Labels`` picks
    labelled or TAB records, ``Freq`` sets the output rate (0 silences the port), ``EOL`` the end
    of line. Other commands are ignored; no reply is sent (the acknowledgement text of a real
    LI-7550 is not documented in our sources).
    """

    command_terminator = b"\n"
    ORDER: tuple[str, ...] = ()
    INTEGER: frozenset[str] = frozenset({"Ndx", "DiagVal"})
    DEFAULT_OUTPUTS: tuple[str, ...] = ()
    DIAG_ALL_OK = 0xFF
    #: condition -> signal-strength (or AGC) code written into diagnostic bits 0-3
    CONDITION_CODES: Mapping[str, int] = MappingProxyType({})

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = DEFAULT_BAUD) -> None:
        super().__init__(rate_hz, seed, baud)
        self.outputs = tuple(self.DEFAULT_OUTPUTS)
        self.labels = True
        self.eol = b"\n"
        self.bandwidth_hz = 10.0
        #: Diagnostic value written when all is well, and the codes of :data:`CONDITION_CODES`.
        self.diag_all_ok = self.DIAG_ALL_OK
        self.condition_codes = dict(self.CONDITION_CODES)

    def values(self, obs: dict[str, np.ndarray], first_index: int) -> dict[str, np.ndarray]:
        """Per enabled label, the values of the block's samples."""
        raise NotImplementedError

    def diag(self, obs: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Diagnostic values: all OK (or ``obs["gas_diag"]``), with the condition's signal code."""
        diag = np.broadcast_to(np.asarray(obs.get("gas_diag", self.diag_all_ok), dtype=np.int64), (n,)).copy()
        code = self.condition_codes.get(self.condition or "")
        if code is not None:
            diag = (diag & ~0xF) | code
        return diag

    def frames(self, obs: dict[str, np.ndarray], first_index: int) -> list[bytes]:
        values = self.values(obs, first_index)
        order = [label for label in self.ORDER if label in self.outputs]
        text = {label: [str(int(v)) if label in self.INTEGER else licor_number(float(v)) for v in values[label]]
                for label in order}
        n = len(next(iter(values.values()))) if values else 0
        out = []
        for i in range(n):
            if self.labels:
                body = "(Data " + "".join(f"({label} {text[label][i]})" for label in order) + ")"
            else:
                body = "\t".join(text[label][i] for label in order)
            out.append(body.encode("ascii") + self.eol)
        return out

    def corrupt(self, frame: bytes) -> bytes:
        """No checksum in this grammar: damage a number instead (a ``#`` after the first digit of
        the first value that is not ``Ndx``), so the parser rejects the record as malformed."""
        order = [label for label in self.ORDER if label in self.outputs]
        target = next((label for label in order if label != "Ndx"), order[0] if order else "")
        if frame.startswith(b"(Data"):
            key = b"(" + target.encode("ascii") + b" "
            at = frame.find(key)
            if at < 0:
                return frame[:len(frame) // 2] + b"#" + frame[len(frame) // 2:]
            at += len(key) + 1
        else:
            k = order.index(target) if target in order else 0
            at = sum(len(f) + 1 for f in frame.split(b"\t")[:k]) + 1
        return frame[:at] + b"#" + frame[at:]

    def reply(self, command: bytes) -> bytes:
        settings = parse_outputs(command.strip(b"\r"))
        if settings is None:
            return b""
        self.outputs = settings.apply(self.outputs, self.ORDER)
        if settings.labels is not None:
            self.labels = settings.labels
        if settings.eol in (b"\n", b"\r\n"):
            self.eol = settings.eol
        if settings.bandwidth_hz is not None:
            self.bandwidth_hz = settings.bandwidth_hz
        if settings.freq_hz is not None:
            self.streaming = settings.freq_hz > 0
            if settings.freq_hz > 0:
                self.rate_hz = settings.freq_hz
        return b""


def mole_fractions(obs: dict[str, np.ndarray], dry: bool) -> tuple[np.ndarray, np.ndarray]:
    """CO2 [umol mol-1] and H2O [mmol mol-1] mole fractions an analyser computes from its densities
    [mmol m-3], temperature [degC] and pressure [kPa] (ideal gas, n = p / (R T)); ``dry``: per mole
    of dry air (n_dry = n - rho_v), as the LI-7200 reports, else per mole of moist air."""
    n = np.asarray(obs["pressure"], dtype=float) * 1e3 / (R_J_MOL_K * (np.asarray(obs["temperature"]) + 273.15))
    h2o = np.asarray(obs["h2o"], dtype=float)
    if dry:
        n = n - h2o * 1e-3
    return np.asarray(obs["co2"], dtype=float) / n * 1e3, h2o / n
