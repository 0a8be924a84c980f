"""The MQTT wire contract between station and collector (schema version 1).

Topics (``PREFIX`` defaults to ``fluxedge``)::

    PREFIX/v1/STATION/flux     one message per averaging period, QoS 1, not retained
    PREFIX/v1/STATION/status   retained; "online" on connect, "offline" as the last will

Payloads are UTF-8 JSON objects with ``schema`` (= 1), ``kind`` (the topic's last level) and
``station`` (= the topic's station level). A flux payload::

    {"schema": 1, "kind": "flux", "station": "mangrove-01", "seq": 17,
     "period_start": "2026-11-22T10:00:00Z", "period_end": "2026-11-22T10:30:00Z",
     "values": {"FC": -12.31, "LE": 310.2, "H": 95.4, "USTAR": 0.41, ..., "N_SAMPLES": 36000}}

``values`` uses AmeriFlux BASE names where they exist (units in :data:`FLUX_FIELDS`); a value
that could not be computed is ``null``. :func:`decode` is the collector's gate: anything that does
not match raises :class:`PayloadError` with a short reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024

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
}


class PayloadError(ValueError):
    """A message that does not match the contract; ``str()`` is the reason."""


def topic(prefix: str, station: str, kind: str) -> str:
    return f"{prefix}/v{SCHEMA_VERSION}/{station}/{kind}"


def subscription(prefix: str, kind: str) -> str:
    return f"{prefix}/v{SCHEMA_VERSION}/+/{kind}"


def deadletter_topic(prefix: str) -> str:
    return f"{prefix}/v{SCHEMA_VERSION}/_deadletter"


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: object, name: str) -> int:
    if not isinstance(text, str):
        raise PayloadError(f"{name} must be a string 'YYYY-MM-DDTHH:MM:SSZ'")
    try:
        return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise PayloadError(f"{name} {text[:40]!r} is not 'YYYY-MM-DDTHH:MM:SSZ'") from None


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


def status_payload(station: str, state: str, version: str, config_hash: str, time_s: float) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "kind": "status", "station": station, "state": state,
                       "version": version, "config_hash": config_hash, "time": _iso(int(time_s))},
                      separators=(",", ":")).encode()


def _reject_constant(name: str) -> float:
    raise PayloadError(f"non-finite number {name} in JSON")


def parse_topic(prefix: str, topic_name: str) -> tuple[str, str]:
    """(station, kind) from a topic, or :class:`PayloadError`."""
    parts = topic_name.split("/")
    if len(parts) != 4 or parts[0] != prefix or parts[1] != f"v{SCHEMA_VERSION}":
        raise PayloadError(f"topic {topic_name[:120]!r} is not {prefix}/v{SCHEMA_VERSION}/STATION/KIND")
    return parts[2], parts[3]


def decode(prefix: str, topic_name: str, payload: bytes) -> FluxRecord:
    """A validated flux record from an MQTT message, or :class:`PayloadError` with the reason."""
    station, kind = parse_topic(prefix, topic_name)
    if kind != "flux":
        raise PayloadError(f"unsupported message kind {kind!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        doc = json.loads(payload, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise PayloadError("payload must be a JSON object")
    if doc.get("schema") != SCHEMA_VERSION:
        raise PayloadError(f"unsupported schema version {doc.get('schema')!r} (expected {SCHEMA_VERSION})")
    if doc.get("kind") != kind:
        raise PayloadError(f"payload kind {doc.get('kind')!r} does not match topic kind {kind!r}")
    if doc.get("station") != station:
        raise PayloadError(f"payload station {str(doc.get('station'))[:64]!r} does not match topic "
                           f"station {station!r}")
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
