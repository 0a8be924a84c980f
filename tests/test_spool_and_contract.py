"""The on-disk outbox and the MQTT wire contract."""

import json
import math

import pytest

from collector.lineprotocol import flux_line
from fluxedge.common import messages
from station.outbox.spool import Spool


def record(**values):
    return messages.FluxRecord("tower-1", 7, 1_700_000_000, 1_700_001_800, values or {"FC": -3.25, "H": 101.5})


def test_spool_keeps_order_and_survives_reopening(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    ids = [spool.put("flux", f"t/{i}", f"p{i}".encode()) for i in range(5)]
    spool.delete(ids[:2])
    spool.close()
    again = Spool(tmp_path / "s.sqlite")
    assert [m.payload for m in again.oldest(10)] == [b"p2", b"p3", b"p4"]
    assert [m.id for m in again.oldest(10, exclude={ids[3]})] == [ids[2], ids[4]]
    assert again.depth() == 3 and again.oldest_age_s() >= 0


def test_full_spool_drops_diagnostics_before_fluxes(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=400_000)
    for i in range(40):
        spool.put("flux", "t/flux", b"F" * 2000 + str(i).encode())
    for _ in range(400):
        spool.put("diag", "t/diag", b"D" * 2000)
    kinds = [m.kind for m in spool.oldest(10_000)]
    assert kinds.count("flux") == 40
    assert spool.dropped() > 0 and spool.size_bytes() <= 400_000


def test_record_round_trip_is_exact():
    rec = record(FC=-12.345678901234567, H=0.1 + 0.2, LE=None, N_SAMPLES=36000.0)
    topic = messages.topic("fluxedge", "tower-1", "flux")
    back = messages.decode("fluxedge", topic, rec.encode())
    assert back == rec


def test_nan_results_travel_as_null():
    rec = record(FC=math.nan, H=1.0)
    doc = json.loads(rec.encode())
    assert doc["values"]["FC"] is None


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("fluxedge/v1/tower-1/flux", b"{not json", "malformed JSON"),
    ("fluxedge/v1/tower-1/flux", b'[1, 2]', "must be a JSON object"),
    ("fluxedge/v1/tower-1/flux", b'{"schema": 2}', "unsupported schema version 2"),
    ("fluxedge/v1/tower-2/flux", None, "does not match topic station"),
    ("fluxedge/v1/tower-1/flux", b"x" * (64 * 1024 + 1), "exceeds"),
    ("fluxedge/tower-1/flux", None, "is not fluxedge/v1/STATION/KIND"),
    ("fluxedge/v1/tower-1/flux", "FC=NaN", "non-finite number NaN"),
    ("fluxedge/v1/tower-1/flux", "FC=\"a\"", "must be a number or null"),
    ("fluxedge/v1/tower-1/flux", "FC=1e6", "outside plausible range"),
    ("fluxedge/v1/tower-1/flux", "BOGUS=1", "unknown value 'BOGUS'"),
])
def test_invalid_messages_are_rejected_with_a_reason(topic, payload, reason):
    good = record().encode()
    if payload is None:
        payload = good
    elif isinstance(payload, str):
        name, value = payload.split("=")
        payload = good.replace(b'"FC":-3.25', f'"{name}":{value}'.encode())
    with pytest.raises(messages.PayloadError, match=reason):
        messages.decode("fluxedge", topic, payload)


def test_line_protocol_escapes_and_keeps_full_precision():
    rec = messages.FluxRecord("a b,c", 3, 100, 1900, {"FC": 0.1 + 0.2, "LE": None})
    assert flux_line(rec) == r"flux,station=a\ b\,c FC=0.30000000000000004,seq=3i,period_s=1800i 1900000"
