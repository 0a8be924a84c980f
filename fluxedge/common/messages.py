"""The MQTT wire contract between station and collector (schema version 1).

Topics (``PREFIX`` defaults to ``fluxedge``)::

    PREFIX/v1/STATION/flux     one message per averaging period, QoS 1, not retained
    PREFIX/v1/STATION/met      a batch of meteorological records, QoS 1, not retained
    PREFIX/v1/STATION/diag     a batch of instrument / station diagnostics, QoS 1, not retained
    PREFIX/v1/STATION/alarm    a batch of alarm transitions (raised / cleared), QoS 1, not retained
    PREFIX/v1/STATION/status   retained; "online" on connect, "offline" as the last will
    PREFIX/v1/_deadletter      the collector's rejects: {"reason", "topic", "payload"}
    PREFIX/v1/_fleet/...       the collectors' own: alarm state, presence, silences, commands
                               (collector/alarms/service.py)

Payloads are UTF-8 JSON objects (at most :data:`MAX_PAYLOAD_BYTES`) with ``schema`` (= 1),
``kind`` (the topic's last level) and ``station`` (= the topic's station level). A flux payload::

    {"schema": 1, "kind": "flux", "station": "mangrove-01", "seq": 17,
     "period_start": "2026-11-22T10:00:00Z", "period_end": "2026-11-22T10:30:00Z",
     "values": {"FC": -12.31, "LE": 310.2, "H": 95.4, "USTAR": 0.41, ..., "N_SAMPLES": 36000}}

``values`` uses AmeriFlux BASE names where they exist (units in :data:`FLUX_FIELDS`); a value
that could not be computed is ``null``.

met, diag and alarm payloads carry a batch of 1..:data:`MAX_BATCH_RECORDS` records::

    {"schema": 1, "kind": "met", "station": "S", "records": [
        {"time": "2026-11-22T10:01:00.000Z", "values": {"TA": 27.1, "RH": 81.0, "PA": 100.9}}, ...]}
    {"schema": 1, "kind": "diag", "station": "S", "records": [
        {"time": "...Z", "source": "sonic", "values": {"SAMPLES_EXPECTED": 1200, ...}}, ...]}
    {"schema": 1, "kind": "alarm", "station": "S", "records": [
        {"time": "2026-11-22T10:01:00.250Z", "alarm": "instrument_silent", "source": "irga",
         "state": "raised", "severity": "critical", "message": "no data from irga for 30 s",
         "value": 30.0}, ...]}

Record times are UTC, emitted as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; whole seconds ``...SSZ`` are
accepted too. In Python they are float Unix seconds. met names are :data:`MET_FIELDS` names,
optionally with an AmeriFlux position qualifier ``_<H>_<V>_<R>`` or ``_<N>`` (``TS_1``,
``SWC_1_2_1``), checked against the base name's range. diag names are :data:`DIAG_FIELDS` names
or ``FLAG_<NAME>`` (count of samples carrying that instrument flag). ``source`` and ``alarm``
names match :data:`NAME_PATTERN`; an alarm ``message`` holds at most 500 characters.
Non-finite numbers are sent as ``null``; ``NaN``/``Infinity`` in JSON are rejected.

:func:`decode` is the collector's gate: anything that does not match raises
:class:`PayloadError` with a short one-line reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

try:  # about twice as fast as json for the collector; the json module gives the reasons
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency, but optional for a station
    _fast_loads = None

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_BATCH_RECORDS = 1000
MAX_MESSAGE_CHARS = 500
#: record times and flux period bounds must fall in 1970..2199 (InfluxDB stores 1677..2262)
LATEST_TIME_S = 7_258_118_400
#: kinds the collector ingests; "status" is informational only
DATA_KINDS = ("flux", "met", "diag", "alarm")
BATCH_KINDS = ("met", "diag", "alarm")
ALARM_STATES = ("raised", "cleared")
ALARM_SEVERITIES = ("warning", "critical")
#: instrument families a station names in its status (firmware_bridge.families; a test keeps them equal)
INSTRUMENT_FAMILIES = ("csat3", "csat3b", "windmaster", "li7500", "li7200", "li7700", "modbus")
#: source and alarm names
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

#: name -> (unit, lowest plausible, highest plausible, meaning)
FLUX_FIELDS: dict[str, tuple[str, float, float, str]] = {
    "FC": ("umol m-2 s-1", -500, 500, "CO2 flux, WPL-corrected"),
    "FH2O": ("mmol m-2 s-1", -200, 200, "H2O flux, WPL-corrected"),
    "LE": ("W m-2", -2000, 3000, "latent heat flux"),
    "H": ("W m-2", -2000, 3000, "sensible heat flux, sonic temperature corrected"),
    "TAU": ("kg m-1 s-2", -20, 20, "momentum flux"),
    "USTAR": ("m s-1", 0, 10, "friction velocity"),
    "MO_LENGTH": ("m", -1e9, 1e9, "Monin-Obukhov length"),
    "ZL": ("1", -1e5, 1e5, "stability parameter (z - d) / L"),
    "WS": ("m s-1", 0, 100, "mean horizontal wind speed"),
    "WD": ("deg", 0, 360, "wind direction, from north"),
    "U_SIGMA": ("m s-1", 0, 50, "standard deviation of streamwise wind"),
    "V_SIGMA": ("m s-1", 0, 50, "standard deviation of cross wind"),
    "W_SIGMA": ("m s-1", 0, 50, "standard deviation of vertical wind"),
    "T_SONIC": ("degC", -80, 80, "mean sonic temperature"),
    "TA": ("degC", -80, 80, "mean air temperature used for fluxes"),
    "CO2": ("umol mol-1", 0, 10000, "mean CO2 mole fraction (wet air)"),
    "H2O": ("mmol mol-1", 0, 200, "mean H2O mole fraction (wet air)"),
    "PA": ("kPa", 30, 120, "mean air pressure"),
    "RHO_AIR": ("kg m-3", 0.3, 2.0, "moist air density"),
    "W_TS_COV": ("K m s-1", -100, 100, "cov(w, Ts) after rotation"),
    "W_CO2_COV": ("mmol m-2 s-1", -100, 100, "cov(w, CO2 density) after rotation"),
    "W_H2O_COV": ("mmol m-2 s-1", -1000, 1000, "cov(w, H2O density) after rotation"),
    "U_W_COV": ("m2 s-2", -100, 100, "cov(u, w) after rotation"),
    "V_W_COV": ("m2 s-2", -100, 100, "cov(v, w) after rotation"),
    "N_SAMPLES": ("1", 0, 1e7, "samples used"),
    "MISSING_PCT": ("%", 0, 100, "samples missing from the period"),
    "ET": ("mm h-1", -20, 20, "evapotranspiration"),
    "FC_SSITC_TEST": ("1", 0, 9, "QC flag of FC (Mauder & Foken 2004: 0 best, 1 budgets, 2 discard)"),
    "H_SSITC_TEST": ("1", 0, 9, "QC flag of H"),
    "LE_SSITC_TEST": ("1", 0, 9, "QC flag of LE"),
    "TAU_SSITC_TEST": ("1", 0, 9, "QC flag of TAU"),
    "FETCH_MAX": ("m", 0, 1e6, "distance of the footprint peak (Kljun et al. 2004)"),
    "FETCH_70": ("m", 0, 1e7, "upwind distance holding 70 % of the footprint"),
    "FETCH_90": ("m", 0, 1e7, "upwind distance holding 90 % of the footprint"),
    "CO2_LAG": ("s", -60, 60, "time lag of CO2 behind the sonic"),
    "H2O_LAG": ("s", -60, 60, "time lag of H2O behind the sonic"),
    "FC_RANDUNC": ("umol m-2 s-1", 0, 500, "random uncertainty of FC (Finkelstein & Sims 2001)"),
    "H_RANDUNC": ("W m-2", 0, 3000, "random uncertainty of H"),
    "LE_RANDUNC": ("W m-2", 0, 3000, "random uncertainty of LE"),
    "TAU_RANDUNC": ("kg m-1 s-2", 0, 20, "random uncertainty of TAU"),
    "VM97_HARD_FLAGS": ("1", 0, 100, "Vickers & Mahrt (1997) hard flags raised in the period"),
    "FCH4": ("nmol m-2 s-1", -5000, 50000, "CH4 flux, WPL-corrected (no LI-7700 spectroscopic correction)"),
    "CH4": ("nmol mol-1", 0, 1e6, "mean CH4 mole fraction (wet air)"),
    "FCH4_SSITC_TEST": ("1", 0, 9, "QC flag of FCH4"),
    "CH4_LAG": ("s", -60, 60, "time lag of CH4 behind the sonic"),
    "FCH4_RANDUNC": ("nmol m-2 s-1", 0, 50000, "random uncertainty of FCH4"),
}

#: meteorological names (AmeriFlux BASE) -> (unit, lowest plausible, highest plausible, meaning);
#: a name may carry a position qualifier "_<H>_<V>_<R>" or "_<N>" (TS_1, SWC_1_2_1)
MET_FIELDS: dict[str, tuple[str, float, float, str]] = {
    "TA": ("degC", -80, 70, "air temperature"),
    "RH": ("%", 0, 105, "relative humidity (sensors overshoot 100 % slightly in fog)"),
    "VPD": ("hPa", 0, 150, "vapour pressure deficit"),
    "PA": ("kPa", 30, 120, "air pressure"),
    "SW_IN": ("W m-2", -50, 1800, "incoming shortwave radiation"),
    "SW_OUT": ("W m-2", -50, 1500, "outgoing shortwave radiation"),
    "LW_IN": ("W m-2", 0, 800, "incoming longwave radiation"),
    "LW_OUT": ("W m-2", 0, 1000, "outgoing longwave radiation"),
    "PPFD_IN": ("umol m-2 s-1", -50, 4000, "incoming photosynthetic photon flux density"),
    "PPFD_OUT": ("umol m-2 s-1", -50, 3000, "outgoing photosynthetic photon flux density"),
    "NETRAD": ("W m-2", -500, 1500, "net radiation"),
    "P": ("mm", 0, 500, "precipitation over the record's interval"),
    "WS": ("m s-1", 0, 100, "wind speed"),
    "WD": ("deg", 0, 360, "wind direction, from north"),
    "TS": ("degC", -60, 80, "soil temperature"),
    "SWC": ("%", 0, 100, "soil water content (volumetric)"),
    "G": ("W m-2", -1000, 1000, "soil heat flux"),
}

_COUNT = 1e12
#: diagnostic names -> (unit, lowest plausible, highest plausible, meaning); the first group is
#: per instrument (source = the instrument), the second per station (source "station");
#: "FLAG_<NAME>" (NAME matching [A-Z0-9_]{1,40}) counts samples carrying that instrument flag
DIAG_FIELDS: dict[str, tuple[str, float, float, str]] = {
    "SAMPLES_EXPECTED": ("1", 0, _COUNT, "samples expected in the interval"),
    "SAMPLES_RECEIVED": ("1", 0, _COUNT, "samples received in the interval"),
    "SAMPLES_MISSING": ("1", 0, _COUNT, "samples missing in the interval"),
    "CHECKSUM_ERRORS": ("1", 0, _COUNT, "frames rejected for a bad checksum"),
    "RESYNCS": ("1", 0, _COUNT, "times the frame parser resynchronised"),
    "COUNTER_GAPS": ("1", 0, _COUNT, "gaps in the instrument's record counter"),
    "FLAGGED_SAMPLES": ("1", 0, _COUNT, "samples with any diagnostic flag set"),
    "SIGNAL_MEAN": ("%", 0, 100, "mean signal strength"),
    "SIGNAL_MIN": ("%", 0, 100, "lowest signal strength"),
    "CONNECTED": ("1", 0, 1, "1 if the instrument is connected"),
    "RECONNECTS": ("1", 0, _COUNT, "reconnections in the interval"),
    "CPU_TEMP_DEGC": ("degC", -60, 150, "station computer CPU temperature"),
    "LOAD_1M": ("1", 0, 10000, "1-minute load average"),
    "MEM_USED_PCT": ("%", 0, 100, "memory in use"),
    "DISK_FREE_MB": ("MB", 0, 1e12, "free space on the data disk"),
    "ARCHIVE_FILES": ("1", 0, _COUNT, "raw-archive files (periods) the station keeps"),
    "ARCHIVE_MB": ("MB", 0, 1e12, "size of the raw archive"),
    "ARCHIVE_AGE_S": ("s", 0, 1e11, "time since the newest raw-archive file was written"),
    "SPOOL_DEPTH": ("1", 0, _COUNT, "messages waiting in the spool"),
    "SPOOL_OLDEST_S": ("s", 0, 1e10, "age of the oldest spooled message"),
    "SPOOL_DROPPED": ("1", 0, _COUNT, "messages the full spool dropped"),
    "NTP_SYNCED": ("1", 0, 1, "1 if the clock is NTP-synchronised"),
    "CLOCK_JUMP_S": ("s", -1e10, 1e10, "last clock step"),
    "UPTIME_S": ("s", 0, 1e11, "station uptime"),
}
DIAG_FLAG_RANGE: tuple[str, float, float, str] = ("1", 0, _COUNT, "samples carrying this flag")

_QUALIFIED = re.compile(r"([A-Z][A-Z0-9_]*?)(?:_\d{1,3}_\d{1,3}_\d{1,3}|_\d{1,3})")
_DIAG_FLAG = re.compile(r"FLAG_[A-Z0-9_]{1,40}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z")


class PayloadError(ValueError):
    """A message that does not match the contract; ``str()`` is the reason."""


def topic(prefix: str, station: str, kind: str) -> str:
    return f"{prefix}/v{SCHEMA_VERSION}/{station}/{kind}"


def subscription(prefix: str, kind: str) -> str:
    return f"{prefix}/v{SCHEMA_VERSION}/+/{kind}"


def deadletter_topic(prefix: str) -> str:
    return f"{prefix}/v{SCHEMA_VERSION}/_deadletter"


def fleet_topic(prefix: str, *levels: str) -> str:
    """``PREFIX/v1/_fleet/LEVEL/...``: the collectors' alarm state, presence, silences and commands
    (no station id starts with "_", so no station's topics or ACL pattern reach them)."""
    return "/".join((f"{prefix}/v{SCHEMA_VERSION}/_fleet", *levels))


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(time_s: float) -> str:
    """Unix seconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (rounded to the millisecond)."""
    ms = round(time_s * 1000)
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _epoch(text: object, name: str) -> int:
    if not isinstance(text, str):
        raise PayloadError(f"{name} must be a string 'YYYY-MM-DDTHH:MM:SSZ'")
    try:
        value = int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise PayloadError(f"{name} {text[:40]!r} is not 'YYYY-MM-DDTHH:MM:SSZ'") from None
    if not 0 <= value < LATEST_TIME_S:  # the record times' range
        raise PayloadError(f"{name} {text} is outside 1970..2199")
    return value


_time_cache: dict[str, float] = {}


def parse_time(text: object, name: str = "time") -> float:
    """``YYYY-MM-DDTHH:MM:SS[.mmm]Z`` -> Unix seconds, or :class:`PayloadError`."""
    if type(text) is str:
        cached = _time_cache.get(text)
        if cached is not None:
            return cached
        if _TIME.fullmatch(text):
            try:
                value = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC).timestamp()
            except ValueError:
                pass
            else:
                value = round(value * 1000) / 1000
                if not 0 <= value < LATEST_TIME_S:
                    raise PayloadError(f"{name} {text} is outside 1970..2199")
                if len(_time_cache) >= 100_000:
                    _time_cache.clear()
                _time_cache[text] = value
                return value
        raise PayloadError(f"{name} {text[:40]!r} is not 'YYYY-MM-DDTHH:MM:SS.mmmZ'")
    raise PayloadError(f"{name} must be a string 'YYYY-MM-DDTHH:MM:SS.mmmZ'")


@dataclass(frozen=True)
class FluxRecord:
    """One averaging period's results. Times are Unix seconds (UTC)."""

    station: str
    seq: int
    period_start: int
    period_end: int
    values: dict[str, float | None]

    def encode(self) -> bytes:
        values = {k: (None if v is None or not math.isfinite(v) else v) for k, v in self.values.items()}
        return json.dumps({"schema": SCHEMA_VERSION, "kind": "flux", "station": self.station,
                           "seq": self.seq, "period_start": _iso(self.period_start),
                           "period_end": _iso(self.period_end), "values": values},
                          separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class MetRecord:
    """Meteorological values at ``time`` [Unix s, UTC]; units in :data:`MET_FIELDS`."""

    time: float
    values: dict[str, float | None]


@dataclass(frozen=True)
class DiagRecord:
    """Diagnostics of ``source`` (an instrument, or "station") at ``time`` [Unix s, UTC]."""

    time: float
    source: str
    values: dict[str, float | None]


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm transition at ``time`` [Unix s, UTC]; ``value`` is the measurement behind it."""

    time: float
    alarm: str
    source: str
    state: str  # "raised" | "cleared"
    severity: str  # "warning" | "critical"
    message: str
    value: float | None = None


@dataclass(frozen=True)
class Batch:
    """A decoded met / diag / alarm message: ``records`` are all of that kind's record type."""

    station: str
    kind: str
    records: list


_RECORD_TYPES = {"met": MetRecord, "diag": DiagRecord, "alarm": AlarmEvent}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _record_doc(kind: str, rec: object) -> dict:
    if type(rec) is not _RECORD_TYPES[kind]:
        raise TypeError(f"a {kind} batch holds {_RECORD_TYPES[kind].__name__}, not {type(rec).__name__}")
    if kind == "alarm":
        return {"time": iso_ms(rec.time), "alarm": rec.alarm, "source": rec.source, "state": rec.state,
                "severity": rec.severity, "message": rec.message, "value": _finite(rec.value)}
    values = {k: _finite(v) for k, v in rec.values.items()}
    if kind == "diag":
        return {"time": iso_ms(rec.time), "source": rec.source, "values": values}
    return {"time": iso_ms(rec.time), "values": values}


def encode_batch(kind: str, station: str, records: list) -> bytes:
    """A met / diag / alarm message carrying ``records`` (non-finite numbers become null).

    Raises ValueError for an unknown kind or a record count outside 1..MAX_BATCH_RECORDS and
    TypeError for a record of the wrong type; the size limit is the caller's to respect
    (:data:`MAX_PAYLOAD_BYTES`)."""
    if kind not in _RECORD_TYPES:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(BATCH_KINDS)}")
    if not 1 <= len(records) <= MAX_BATCH_RECORDS:
        raise ValueError(f"a batch holds 1..{MAX_BATCH_RECORDS} records, got {len(records)}")
    return json.dumps({"schema": SCHEMA_VERSION, "kind": kind, "station": station,
                       "records": [_record_doc(kind, r) for r in records]},
                      separators=(",", ":"), allow_nan=False).encode()


def status_payload(station: str, state: str, version: str, config_hash: str, time_s: float,
                   site: str | None = None, instruments: dict[str, str] | None = None) -> bytes:
    """The retained status; ``site`` (the site id) and ``instruments`` (name -> family, one of
    :data:`INSTRUMENT_FAMILIES`) let the collector's fleet rules pick each instrument's defaults."""
    doc = {"schema": SCHEMA_VERSION, "kind": "status", "station": station, "state": state,
           "version": version, "config_hash": config_hash, "time": _iso(int(time_s))}
    if site is not None:
        doc["site"] = site
    if instruments:
        doc["instruments"] = dict(instruments)
    return json.dumps(doc, separators=(",", ":")).encode()


def _reject_constant(name: str) -> float:
    raise PayloadError(f"non-finite number {name} in JSON")


def parse_topic(prefix: str, topic_name: str) -> tuple[str, str]:
    """(station, kind) from a topic, or :class:`PayloadError`."""
    parts = topic_name.split("/")
    if len(parts) != 4 or parts[0] != prefix or parts[1] != f"v{SCHEMA_VERSION}":
        raise PayloadError(f"topic {topic_name[:120]!r} is not {prefix}/v{SCHEMA_VERSION}/STATION/KIND")
    if not parts[2] or not parts[2].isprintable():
        raise PayloadError(f"station {parts[2][:64]!r} in the topic is empty or holds control characters")
    return parts[2], parts[3]


def _slow_loads(payload: bytes) -> object:
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None


if _fast_loads is None:
    _fast_loads = _slow_loads


def _load(payload: bytes, station: str, kind: str) -> dict:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        doc = _fast_loads(payload)  # rejects NaN / Infinity itself
    except Exception:  # any refusal: let the json module accept it or name the reason
        doc = _slow_loads(payload)
    if not isinstance(doc, dict):
        raise PayloadError("payload must be a JSON object")
    if doc.get("schema") != SCHEMA_VERSION or type(doc.get("schema")) is not int:
        raise PayloadError(f"unsupported schema version {str(doc.get('schema'))[:20]} (expected {SCHEMA_VERSION})")
    if doc.get("kind") != kind:
        raise PayloadError(f"payload kind {str(doc.get('kind'))[:20]!r} does not match topic kind {kind!r}")
    if doc.get("station") != station:
        raise PayloadError(f"payload station {str(doc.get('station'))[:64]!r} does not match topic "
                           f"station {station!r}")
    return doc


def decode(prefix: str, topic_name: str, payload: bytes) -> FluxRecord | Batch:
    """A validated :class:`FluxRecord` (flux) or :class:`Batch` (met, diag, alarm) from an MQTT
    message, or :class:`PayloadError` with the reason."""
    station, kind = parse_topic(prefix, topic_name)
    if kind == "flux":
        return _decode_flux(station, _load(payload, station, kind))
    if kind not in _RECORD_TYPES:
        raise PayloadError(f"unsupported message kind {kind[:40]!r}")
    doc = _load(payload, station, kind)
    raw = doc.get("records")
    if not isinstance(raw, list):
        raise PayloadError("records must be a JSON array")
    if not 1 <= len(raw) <= MAX_BATCH_RECORDS:
        raise PayloadError(f"records holds {len(raw)} entries, must be 1..{MAX_BATCH_RECORDS}")
    parse = _PARSERS[kind]
    records = []
    for i, item in enumerate(raw):
        if type(item) is not dict:
            raise PayloadError(f"records[{i}] must be a JSON object")
        try:
            records.append(parse(item))
        except PayloadError as exc:
            raise PayloadError(f"records[{i}]: {exc}") from None
    return Batch(station, kind, records)


def _decode_flux(station: str, doc: dict) -> FluxRecord:
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise PayloadError("seq must be a non-negative integer")
    start, end = _epoch(doc.get("period_start"), "period_start"), _epoch(doc.get("period_end"), "period_end")
    if not 0 < end - start <= 86400:
        raise PayloadError("period_end must be after period_start, at most one day later")
    raw_values = doc.get("values")
    if not isinstance(raw_values, dict):
        raise PayloadError("values must be a JSON object")
    values: dict[str, float | None] = {}
    for name, value in raw_values.items():
        if name not in FLUX_FIELDS:
            raise PayloadError(f"unknown value {str(name)[:40]!r}")
        if value is None:
            values[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"value {name} must be a number or null, got {type(value).__name__}")
        _, lo, hi, _ = FLUX_FIELDS[name]
        if not lo <= value <= hi:
            raise PayloadError(f"value {name}={value} outside plausible range [{lo}, {hi}]")
        values[name] = float(value)
    return FluxRecord(station, seq, start, end, values)


def met_base(name: str) -> str | None:
    """The :data:`MET_FIELDS` base name of a met name with or without its position qualifier
    (``TS_1_2_1`` -> ``TS``), or None if it is none."""
    if name in MET_FIELDS:
        return name
    match = _QUALIFIED.fullmatch(name)
    return match.group(1) if match and match.group(1) in MET_FIELDS else None


def _met_range(name: str) -> tuple[float, float] | None:
    base = met_base(name)
    return None if base is None else (MET_FIELDS[base][1], MET_FIELDS[base][2])


def _diag_range(name: str) -> tuple[float, float] | None:
    spec = DIAG_FIELDS.get(name)
    if spec is None and _DIAG_FLAG.fullmatch(name):
        spec = DIAG_FLAG_RANGE
    return None if spec is None else (spec[1], spec[2])


# name -> (lo, hi) for names seen so far (bounded; the lookups above are the slow path)
_range_cache: dict[str, dict[str, tuple[float, float]]] = {"met": {}, "diag": {}}


def _values(raw: object, table: str) -> dict[str, float | None]:
    """The checked values of a met / diag record: the decoded dict itself when every value is
    already a float or null (the common case), else a copy with integers made floats."""
    if type(raw) is not dict:
        raise PayloadError("values must be a JSON object")
    cache = _range_cache[table]
    convert = False
    for name, value in raw.items():
        bounds = cache.get(name)
        if bounds is None:
            bounds = _met_range(name) if table == "met" else _diag_range(name)
            if bounds is None:
                raise PayloadError(f"unknown {table} value {str(name)[:40]!r}")
            if len(cache) < 10_000:
                cache[name] = bounds
        kind = type(value)
        if kind is float:
            if bounds[0] <= value <= bounds[1]:
                continue
        elif value is None:
            continue
        elif kind is int:
            convert = True
        else:
            raise PayloadError(f"value {name} must be a number or null, got {kind.__name__}")
        if not bounds[0] <= value <= bounds[1]:
            raise PayloadError(f"value {name}={value} outside plausible range [{bounds[0]}, {bounds[1]}]")
    if convert:
        return {name: (float(value) if type(value) is int else value) for name, value in raw.items()}
    return raw


_valid_names: set[str] = set()


def _name(value: object, what: str) -> str:
    if type(value) is not str:
        raise PayloadError(f"{what} must be a string, got {type(value).__name__}")
    if value in _valid_names:
        return value
    if not NAME_PATTERN.fullmatch(value):
        raise PayloadError(f"{what} {str(value)[:70]!r} does not match {NAME_PATTERN.pattern}")
    if len(_valid_names) < 10_000:
        _valid_names.add(value)
    return value


def _parse_met(item: dict) -> MetRecord:
    return MetRecord(parse_time(item.get("time")), _values(item.get("values"), "met"))


def _parse_diag(item: dict) -> DiagRecord:
    return DiagRecord(parse_time(item.get("time")), _name(item.get("source"), "source"),
                      _values(item.get("values"), "diag"))


def _parse_alarm(item: dict) -> AlarmEvent:
    state, severity, message, value = item.get("state"), item.get("severity"), item.get("message"), item.get("value")
    if state not in ALARM_STATES:
        raise PayloadError(f"state {str(state)[:20]!r} is not one of {', '.join(ALARM_STATES)}")
    if severity not in ALARM_SEVERITIES:
        raise PayloadError(f"severity {str(severity)[:20]!r} is not one of {', '.join(ALARM_SEVERITIES)}")
    if type(message) is not str:
        raise PayloadError("message must be a string")
    if len(message) > MAX_MESSAGE_CHARS:
        raise PayloadError(f"message of {len(message)} characters exceeds {MAX_MESSAGE_CHARS}")
    if not message.isascii():
        try:
            message.encode()
        except UnicodeEncodeError:  # JSON's "\ud800": a lone surrogate is no Unicode text to store
            raise PayloadError("message is not valid Unicode text (lone surrogate escape)") from None
    if value is not None:
        if type(value) is not float and type(value) is not int:
            raise PayloadError(f"value must be a number or null, got {type(value).__name__}")
        if not -1e300 < value < 1e300:
            raise PayloadError(f"value {str(value)[:40]} is not a finite number")
        value = float(value)
    return AlarmEvent(parse_time(item.get("time")), _name(item.get("alarm"), "alarm"),
                      _name(item.get("source"), "source"), state, severity, message, value)


_PARSERS = {"met": _parse_met, "diag": _parse_diag, "alarm": _parse_alarm}
