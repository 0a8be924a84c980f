"""The wire contract's met / diag / alarm batches (flux is covered in test_spool_and_contract.py)."""

import json
import math

import pytest

from fluxedge.common import messages as m

T0 = 1_795_341_660.25  # 2026-11-22T10:01:00.250Z


def met(n=3):
    return [m.MetRecord(T0 + 60 * i, {"TA": 27.1 + i, "RH": 81.0, "PA": 100.9, "TS_1": 22.5,
                                       "SWC_1_2_1": 31.0, "P": None}) for i in range(n)]


def diag():
    return [m.DiagRecord(T0, "sonic", {"SAMPLES_EXPECTED": 1200.0, "SAMPLES_RECEIVED": 1199.0,
                                       "FLAG_AMPLITUDE_LOW": 3.0, "CONNECTED": 1.0}),
            m.DiagRecord(T0, "station", {"CPU_TEMP_DEGC": 51.0, "SPOOL_DEPTH": 0.0, "NTP_SYNCED": 1.0})]


def alarm():
    return [m.AlarmEvent(T0, "instrument_silent", "irga", "raised", "critical", "no data from irga for 30 s", 30.0),
            m.AlarmEvent(T0 + 31, "instrument_silent", "irga", "cleared", "warning", "irga is back")]


@pytest.mark.parametrize(("kind", "records"), [("met", met()), ("diag", diag()), ("alarm", alarm())])
def test_batches_round_trip_exactly(kind, records):
    payload = m.encode_batch(kind, "tower-1", records)
    back = m.decode("fluxedge", m.topic("fluxedge", "tower-1", kind), payload)
    assert back == m.Batch("tower-1", kind, records)


def test_times_are_emitted_with_milliseconds_and_whole_seconds_are_accepted():
    doc = json.loads(m.encode_batch("met", "S", met(1)))
    assert doc == {"schema": 1, "kind": "met", "station": "S", "records": [
        {"time": "2026-11-22T10:01:00.250Z",
         "values": {"TA": 27.1, "RH": 81.0, "PA": 100.9, "TS_1": 22.5, "SWC_1_2_1": 31.0, "P": None}}]}
    assert m.parse_time("2026-11-22T10:01:00Z") == T0 - 0.25
    assert m.iso_ms(T0 - 0.25) == "2026-11-22T10:01:00.000Z"


def test_non_finite_values_are_sent_as_null():
    payload = m.encode_batch("met", "S", [m.MetRecord(T0, {"TA": math.nan, "RH": math.inf})])
    assert json.loads(payload)["records"][0]["values"] == {"TA": None, "RH": None}
    event = m.AlarmEvent(T0, "a", "b", "raised", "warning", "x", math.nan)
    assert json.loads(m.encode_batch("alarm", "S", [event]))["records"][0]["value"] is None


def test_encode_refuses_wrong_kinds_and_sizes():
    with pytest.raises(ValueError, match="kind 'flux'"):
        m.encode_batch("flux", "S", met(1))
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        m.encode_batch("met", "S", [])
    with pytest.raises(TypeError, match="holds DiagRecord"):
        m.encode_batch("diag", "S", met(1))


def test_qualified_names_are_checked_against_their_base():
    assert m.decode("p", "p/v1/S/met", m.encode_batch("met", "S", [m.MetRecord(T0, {"SW_IN_1_1_1": 800.0})]))
    with pytest.raises(m.PayloadError, match=r"TS_2=90.0 outside plausible range"):
        m.decode("p", "p/v1/S/met", m.encode_batch("met", "S", [m.MetRecord(T0, {"TS_2": 90.0})]))
    with pytest.raises(m.PayloadError, match="unknown met value 'XX_1'"):
        m.decode("p", "p/v1/S/met", m.encode_batch("met", "S", [m.MetRecord(T0, {"XX_1": 1.0})]))


def _met_doc(**record):
    base = {"time": "2026-11-22T10:01:00.250Z", "values": {"TA": 20.0}}
    base.update(record)
    return {"schema": 1, "kind": "met", "station": "S", "records": [base]}


def _alarm_doc(**record):
    base = {"time": "2026-11-22T10:01:00.250Z", "alarm": "a", "source": "irga", "state": "raised",
            "severity": "warning", "message": "m", "value": 1.0}
    base.update(record)
    return {"schema": 1, "kind": "alarm", "station": "S", "records": [base]}


@pytest.mark.parametrize(("topic", "doc", "reason"), [
    ("p/v1/S/met", {**_met_doc(), "schema": 2}, "unsupported schema version 2"),
    ("p/v1/S/met", {**_met_doc(), "schema": "1"}, "unsupported schema version 1"),
    ("p/v1/S/met", {**_met_doc(), "kind": "diag"}, "does not match topic kind"),
    ("p/v1/T/met", _met_doc(), "payload station 'S' does not match topic station 'T'"),
    ("p/v1/S/status", _met_doc(), "unsupported message kind 'status'"),
    ("p/v1/S/met", {**_met_doc(), "records": {}}, "records must be a JSON array"),
    ("p/v1/S/met", {**_met_doc(), "records": []}, "records holds 0 entries"),
    ("p/v1/S/met", {**_met_doc(), "records": [_met_doc()["records"][0]] * 1001}, "records holds 1001"),
    ("p/v1/S/met", {**_met_doc(), "records": [3]}, r"records\[0\] must be a JSON object"),
    ("p/v1/S/met", _met_doc(time="2026-11-22 10:01:00Z"), r"records\[0\]: time .* is not"),
    ("p/v1/S/met", _met_doc(time="2026-13-22T10:01:00Z"), "is not 'YYYY"),
    ("p/v1/S/met", _met_doc(time=1.5), "time must be a string"),
    ("p/v1/S/met", _met_doc(values={"TA": "warm"}), "value TA must be a number or null, got str"),
    ("p/v1/S/met", _met_doc(values={"TA": True}), "got bool"),
    ("p/v1/S/met", _met_doc(values={"RH": 180}), "outside plausible range"),
    ("p/v1/S/met", _met_doc(values=[1]), "values must be a JSON object"),
    ("p/v1/S/diag", {**_met_doc(), "kind": "diag"}, "source must be a string, got NoneType"),
    ("p/v1/S/alarm", _alarm_doc(state="up"), "state 'up' is not one of raised, cleared"),
    ("p/v1/S/alarm", _alarm_doc(severity="info"), "severity 'info'"),
    ("p/v1/S/alarm", _alarm_doc(message="x" * 501), "message of 501 characters exceeds 500"),
    ("p/v1/S/alarm", _alarm_doc(message=None), "message must be a string"),
    ("p/v1/S/alarm", _alarm_doc(source="IRGA"), "source 'IRGA' does not match"),
    ("p/v1/S/alarm", _alarm_doc(source=["irga"]), "source must be a string, got list"),
    ("p/v1/S/met", _met_doc(values={"TA": [1]}), "value TA must be a number or null, got list"),
    ("p/v1/S/met", _met_doc(values={"TA": 10 ** 30}), "outside plausible range"),
    ("p/v1/S/alarm", _alarm_doc(alarm="a" * 65), "alarm 'a+' does not match"),
    ("p/v1/S/alarm", _alarm_doc(value="3"), "value must be a number or null, got str"),
    ("p/v1/S/alarm", _alarm_doc(value=10 ** 400), "is not a finite number"),
])
def test_invalid_batches_are_rejected_with_a_reason(topic, doc, reason):
    with pytest.raises(m.PayloadError, match=reason):
        m.decode("p", topic, json.dumps(doc).encode())


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"schema":1,"kind":"met","station":"S","records":[{"time":"2026-11-22T10:01:00Z","values":{"TA":NaN}}]}',
     "non-finite number NaN"),
    (b'{"schema":1,"kind":"met","station":"S","records":[{"time":"2026-11-22T10:01:00Z","values":{"TA":1e999}}]}',
     "TA=inf outside plausible range"),
    (b'{"schema":1,"kind":"alarm","station":"S","records":[{"time":"2026-11-22T10:01:00Z","alarm":"a",'
     b'"source":"b","state":"raised","severity":"warning","message":"","value":-Infinity}]}',
     "non-finite number -Infinity"),
    (b'{"schema":1,"kind":', "malformed JSON"),
    (b'\xff\xfe', "malformed JSON"),
    (b"[" * 100_000, "exceeds"),
    (b"[" * 60_000, "malformed JSON: nested too deeply"),
])
def test_hostile_bytes_are_rejected_with_a_reason(raw, reason):
    topic = "p/v1/S/alarm" if b"alarm" in raw else "p/v1/S/met"
    with pytest.raises(m.PayloadError, match=reason):
        m.decode("p", topic, raw)


def test_limits_and_tables_hold_the_contract_names():
    assert m.MAX_PAYLOAD_BYTES == 64 * 1024 and m.MAX_BATCH_RECORDS == 1000
    for name in ("TA", "RH", "PA", "SW_IN", "PPFD_IN", "NETRAD", "P", "WS", "WD", "TS", "SWC", "G"):
        assert name in m.MET_FIELDS
    for name in ("SAMPLES_EXPECTED", "SAMPLES_RECEIVED", "SAMPLES_MISSING", "CHECKSUM_ERRORS", "RESYNCS",
                 "COUNTER_GAPS", "FLAGGED_SAMPLES", "SIGNAL_MEAN", "SIGNAL_MIN", "CONNECTED", "RECONNECTS",
                 "CPU_TEMP_DEGC", "LOAD_1M", "MEM_USED_PCT", "DISK_FREE_MB", "SPOOL_DEPTH", "SPOOL_OLDEST_S",
                 "SPOOL_DROPPED", "NTP_SYNCED", "CLOCK_JUMP_S", "UPTIME_S"):
        assert name in m.DIAG_FIELDS
    assert m.MET_FIELDS["PA"][0] == "kPa" and m.MET_FIELDS["PPFD_IN"][0] == "umol m-2 s-1"


def _flux_doc(start: str, end: str) -> bytes:
    return json.dumps({"schema": 1, "kind": "flux", "station": "S", "seq": 1, "period_start": start,
                       "period_end": end, "values": {"FC": -1.5}}).encode()


@pytest.mark.parametrize(("start", "end", "reason"), [
    ("1900-01-01T00:00:00Z", "1900-01-01T00:30:00Z", "period_start 1900-01-01T00:00:00Z is outside 1970..2199"),
    ("1969-12-31T23:30:00Z", "1970-01-01T00:00:00Z", "period_start 1969-12-31T23:30:00Z is outside 1970..2199"),
    ("2199-12-31T23:30:00Z", "2200-01-01T00:00:00Z", "period_end 2200-01-01T00:00:00Z is outside 1970..2199"),
    ("2250-01-01T00:00:00Z", "2250-01-01T00:30:00Z", "period_start 2250-01-01T00:00:00Z is outside 1970..2199"),
])
def test_flux_period_bounds_are_range_checked_like_record_times(start, end, reason):
    """Issue 14: a flux period in 1900 or 2250 was stored; record times were already refused."""
    with pytest.raises(m.PayloadError, match=reason):
        m.decode("p", "p/v1/S/flux", _flux_doc(start, end))
    first = m.decode("p", "p/v1/S/flux", _flux_doc("1970-01-01T00:00:00Z", "1970-01-01T00:30:00Z"))
    last = m.decode("p", "p/v1/S/flux", _flux_doc("2199-12-31T23:00:00Z", "2199-12-31T23:30:00Z"))
    assert first.period_start == 0 and last.period_end == m.LATEST_TIME_S - 1800


def test_alarm_message_with_a_lone_surrogate_is_rejected():
    """JSON may escape half a surrogate pair ("\\ud800"); such a message is no text InfluxDB can take
    (it used to kill the collector's writer thread with UnicodeEncodeError)."""
    raw = json.dumps(_alarm_doc(message="lost \ud800 half")).encode()
    with pytest.raises(m.PayloadError, match="message is not valid Unicode text"):
        m.decode("p", "p/v1/S/alarm", raw)
    whole = m.decode("p", "p/v1/S/alarm", json.dumps(_alarm_doc(message="pair \U0001f600 ok\r\n")).encode())
    assert whole.records[0].message == "pair \U0001f600 ok\r\n"
