"""A simulated fleet of towers for tests and the bench: contract messages (met, diag, flux) as a
real station would publish them, deterministic, in time order.

Each station publishes, per block of ``records_per_message`` minutes: one met message (one record
per minute, 8 values), one diag message (sources sonic, irga and station, one record each per
minute) and, when a 30-min period ends in the block, one flux message. With 5 records per
message that is about 10 points per message on average.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fluxedge.common import messages as m

FLUX_PERIOD_S = 1800


@dataclass(frozen=True)
class SimMessage:
    topic: str
    payload: bytes
    #: InfluxDB points the message carries
    points: int
    kind: str
    station: str


def station_name(index: int) -> str:
    return f"tower-{index:04d}"


def _met(i: int, t: float) -> m.MetRecord:
    k = (i * 7 + int(t // 60)) % 100
    return m.MetRecord(t, {"TA": 20.0 + k / 10, "RH": 60.0 + k / 5, "PA": 100.0 + k / 100, "SW_IN": 5.0 * k,
                           "WS": k / 20, "WD": 3.6 * k, "P": 0.0, "TS_1": 18.0 + k / 50})


def _diag(i: int, t: float) -> list[m.DiagRecord]:
    k = (i + int(t // 60)) % 50
    return [m.DiagRecord(t, "sonic", {"SAMPLES_EXPECTED": 1200.0, "SAMPLES_RECEIVED": 1200.0 - k % 3,
                                      "CHECKSUM_ERRORS": float(k % 2), "FLAG_AMPLITUDE_LOW": float(k % 4),
                                      "CONNECTED": 1.0}),
            m.DiagRecord(t, "irga", {"SAMPLES_EXPECTED": 1200.0, "SAMPLES_RECEIVED": 1200.0,
                                     "SIGNAL_MEAN": 95.0 - k / 10, "SIGNAL_MIN": 90.0 - k / 10, "CONNECTED": 1.0}),
            m.DiagRecord(t, "station", {"CPU_TEMP_DEGC": 45.0 + k / 5, "LOAD_1M": k / 25, "SPOOL_DEPTH": 0.0,
                                        "NTP_SYNCED": 1.0, "UPTIME_S": 86400.0 + t % 86400})]


def _flux(i: int, end: int) -> m.FluxRecord:
    k = (i + end // FLUX_PERIOD_S) % 40
    return m.FluxRecord(station_name(i), end // FLUX_PERIOD_S, end - FLUX_PERIOD_S, end,
                        {"FC": -10.0 + k / 4, "LE": 100.0 + k, "H": 50.0 + k, "USTAR": 0.1 + k / 100,
                         "N_SAMPLES": 36000.0})


def fleet_messages(stations: int, start_s: int, minutes: int, records_per_message: int = 5,
                   prefix: str = "fluxedge", first_station: int = 0) -> Iterator[SimMessage]:
    """Messages of ``stations`` towers for ``minutes`` minutes from ``start_s`` (a whole minute,
    Unix s), block by block in time order."""
    for block in range(0, minutes, records_per_message):
        times = [start_s + 60 * (block + j + 1) for j in range(min(records_per_message, minutes - block))]
        flux_ends = [t for t in times if t % FLUX_PERIOD_S == 0]
        for i in range(first_station, first_station + stations):
            name = station_name(i)
            met = [_met(i, t) for t in times]
            yield SimMessage(m.topic(prefix, name, "met"), m.encode_batch("met", name, met), len(met), "met", name)
            diag = [r for t in times for r in _diag(i, t)]
            yield SimMessage(m.topic(prefix, name, "diag"), m.encode_batch("diag", name, diag), len(diag), "diag",
                             name)
            for end in flux_ends:
                yield SimMessage(m.topic(prefix, name, "flux"), _flux(i, end).encode(), 1, "flux", name)
