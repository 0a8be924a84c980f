"""The write path: line protocol keys, a bad point in a batch does not lose the rest (real
influxd partial writes), v2 writes through the translating shim, retries with capped backoff."""

import threading

import pytest

from collector.config import InfluxConfig
from collector.deadletter import reason_key
from collector.lineprotocol import alarm_lines, diag_lines, escape_tag, lines_for, met_lines
from collector.metrics import Metrics, metrics_line
from collector.query import influxql
from collector.sinks import InfluxV1Sink, InfluxV2Sink, SinkError
from collector.writer import BatchWriter
from fluxedge.common import messages as m
from fluxedge.demo.servers import free_port
from fluxedge.demo.v2shim import V2WriteShim
from tests.collector_helpers import influx

T = 1_795_341_660.25


def test_lines_are_keyed_by_tags_and_millisecond_time():
    assert met_lines("a b", [m.MetRecord(T, {"TA": 0.1 + 0.2, "RH": None}), m.MetRecord(T, {"RH": None})]) == [
        r"met,station=a\ b TA=0.30000000000000004 1795341660250"]
    assert diag_lines("s", [m.DiagRecord(T, "sonic", {"CONNECTED": 1.0})]) == [
        "diag,station=s,source=sonic CONNECTED=1.0 1795341660250"]
    event = m.AlarmEvent(T, "silent", "irga", "raised", "critical", 'no "data"\nat all \\', 30.0)
    assert alarm_lines("s", [event]) == [  # the newline goes raw: InfluxDB would store "\n" as two characters
        r'alarm,station=s,source=irga,alarm=silent state="raised",severity="critical",'
        'message="no \\"data\\"\nat all \\\\",value=30.0 1795341660250']
    assert lines_for(m.Batch("s", "alarm", [m.AlarmEvent(T, "x", "y", "cleared", "warning", "")])) == [
        'alarm,station=s,source=y,alarm=x state="cleared",severity="warning",message="" 1795341660250']


def test_reasons_are_counted_without_their_variable_parts():
    assert reason_key("records[3]: value TA=91.5 outside plausible range [-80, 70]") == reason_key(
        "records[0]: value TA=-95 outside plausible range [-80, 70]")
    assert reason_key("malformed JSON: Expecting value: line 1 column 2 (char 1)") != reason_key(
        "unsupported schema version 2 (expected 1)")


def test_writer_isolates_refused_messages_and_retries_the_rest():
    written, calls = [], {"n": 0}

    def write(lines):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise SinkError("InfluxDB unreachable: refused")
        if any("BAD" in line for line in lines):
            raise SinkError("partial write: BAD", 400)
        written.extend(lines)

    halt = threading.Event()
    groups = [[f"p{i}a", f"p{i}b"] for i in range(16)]
    groups[5] = ["BAD5"]
    groups[11] = ["p11a", "BAD11"]
    outcome = BatchWriter(write, halt, retry_min_s=0.01, retry_max_s=0.02).write(groups)
    assert outcome.completed and outcome.retries == 2
    assert set(outcome.rejected) == {5, 11} and "partial write" in outcome.rejected[5]
    assert sorted(set(written)) == sorted(line for i, g in enumerate(groups) if i not in (5, 11) for line in g)


def test_writer_gives_up_without_acknowledging_when_stopped():
    halt = threading.Event()

    def write(lines):
        halt.set()
        raise SinkError("InfluxDB /write answered 503: busy", 503)

    assert not BatchWriter(write, halt, 0.01, 0.01).write([["a"]]).completed


def test_one_bad_point_in_a_real_partial_write_loses_only_its_message(influxd):
    db = influx(influxd.port, "partial")
    sink = InfluxV1Sink(db)
    sink.write(['met,station=x RH="text" 1795341600000'])  # RH is a string in this shard from now on
    groups = [[f"met,station=s{i} TA={i}.5 1795341600000"] for i in range(20)]
    groups[7] = ["met,station=s7 TA=7.5 1795341600000", "met,station=s7 RH=1.0 1795341660000"]
    outcome = BatchWriter(sink.write, threading.Event(), 0.01, 0.01).write(groups)
    assert list(outcome.rejected) == [7]
    assert "field type conflict" in outcome.rejected[7] and "answered 400" in outcome.rejected[7]
    rows = influxql(db, "SELECT count(TA) FROM met WHERE station =~ /^s/")
    assert rows[0]["count"] == 20  # the refused message's good point is kept too


def test_v2_writes_land_in_influxd_through_the_shim_and_redeliveries_overwrite(influxd):
    influx(influxd.port, "v2db")
    shim = V2WriteShim(f"http://127.0.0.1:{influxd.port}")
    try:
        config = InfluxConfig(url=shim.url, api=2, bucket="v2db/autogen", token="u:p")
        sink = InfluxV2Sink(config)
        batch = m.Batch("v2-tower", "met", [m.MetRecord(T + 60 * i, {"TA": 20.0 + i}) for i in range(5)])
        sink.write(lines_for(batch))
        sink.write(lines_for(batch))  # a redelivery
        sink.close()
        rows = influxql(InfluxConfig(url=f"http://127.0.0.1:{influxd.port}", database="v2db"),
                        "SELECT TA FROM met WHERE station = 'v2-tower'")
        assert [r["TA"] for r in rows] == [20.0, 21.0, 22.0, 23.0, 24.0]
    finally:
        shim.stop()


def test_unreachable_and_refusing_servers_are_told_apart(influxd):
    down = InfluxV1Sink(InfluxConfig(url=f"http://127.0.0.1:{free_port()}", database="x", timeout_s=1))
    with pytest.raises(SinkError) as unreachable:
        down.write(["m v=1 1"])
    assert unreachable.value.retryable and unreachable.value.status is None
    assert "unreachable" in str(unreachable.value)
    missing = InfluxV1Sink(InfluxConfig(url=f"http://127.0.0.1:{influxd.port}", database="no_such_db"))
    with pytest.raises(SinkError) as not_found:  # a configuration problem: retried, never dead-lettered
        missing.write(["m v=1 1"])
    assert not_found.value.status == 404 and not_found.value.retryable
    assert "database not found" in str(not_found.value)
    bad = InfluxV1Sink(influx(influxd.port, "badlines"))
    with pytest.raises(SinkError) as refused:
        bad.write(["m v=1 1", "this is not line protocol"])
    assert refused.value.bad_data and refused.value.status == 400


def test_v2_sink_tells_unreachable_and_refusing_servers_apart(influxd):
    """The same three cases through influxdb-client (/api/v2/write via the shim to influxd 1.6)."""
    down = InfluxV2Sink(InfluxConfig(url=f"http://127.0.0.1:{free_port()}", api=2, bucket="x", token="u:p",
                                     timeout_s=1))
    with pytest.raises(SinkError) as unreachable:
        down.write(["m v=1 1"])
    assert unreachable.value.retryable and unreachable.value.status is None
    down.close()
    influx(influxd.port, "v2badlines")
    shim = V2WriteShim(f"http://127.0.0.1:{influxd.port}")
    try:
        missing = InfluxV2Sink(InfluxConfig(url=shim.url, api=2, bucket="no_such_db/autogen", token="u:p"))
        with pytest.raises(SinkError) as not_found:
            missing.write(["m v=1 1"])
        assert not_found.value.status == 404 and not_found.value.retryable
        missing.close()
        bad = InfluxV2Sink(InfluxConfig(url=shim.url, api=2, bucket="v2badlines/autogen", token="u:p"))
        with pytest.raises(SinkError) as refused:
            bad.write(["m v=1 1", "this is not line protocol"])
        assert refused.value.bad_data and refused.value.status == 400
        bad.close()
    finally:
        shim.stop()


def test_metrics_cover_an_interval_and_become_one_point():
    metrics = Metrics()
    metrics.batch_done(messages=100, points=930, latency_s=0.05, lag_s=0.3, retries=2, splits=0)
    metrics.batch_done(messages=50, points=465, latency_s=0.15, lag_s=0.1, retries=0, splits=4)
    metrics.dead_letter()
    snap = metrics.take(inbox=7)
    assert (snap.messages, snap.points, snap.batches, snap.retries, snap.splits) == (150, 1395, 2, 2, 4)
    assert snap.batch_latency_max_s == 0.15 and abs(snap.batch_latency_mean_s - 0.1) < 1e-12
    assert snap.lag_max_s == 0.3 and snap.inbox == 7 and snap.dead_letters == snap.dead_letters_total == 1
    line = metrics_line("c 1", snap, 1795341660.0)
    assert line.startswith(r"collector,collector=c\ 1 messages=150.0,points=1395.0,")
    assert line.endswith(" 1795341660000")
    again = metrics.take(inbox=0)
    assert again.messages == 0 and again.dead_letters == 0 and again.dead_letters_total == 1


#: alarm messages whose text must come back from InfluxDB exactly as sent (issue 14: newline and CR
#: were stored as the two characters backslash-n / backslash-r)
MESSAGES = ["line one\nline two", "crlf\r\nend", "lone cr\r", "\n", "trailing newline\n", "back\\slash",
            "ends with a backslash\\", "\\", "\\\\", "literal \\n is not a newline", 'a "quoted" word', '\\"',
            "tab\there, µ°☃ \U0001f600", "", "comma, equals= and spaces  "]
#: tag values that must come back exactly (a backslash was stored doubled)
TAGS = ["a\\b", "C:\\temp\\x", "\\lead", "two\\\\back", "with space", "com,ma", "eq=ual", "mid\\dle of, all= ",
        "µ-unicode"]


def _round_trip_lines() -> list[str]:
    events = [m.AlarmEvent(T + i, "rt", "irga", "raised", "warning", text) for i, text in enumerate(MESSAGES)]
    lines = alarm_lines("rt-tower", events)
    lines += [f"tagrt,t={escape_tag(tag)} i={i}i {round(T * 1000) + i}" for i, tag in enumerate(TAGS)]
    lines.append(metrics_line("collector\\1 a,b=c", Metrics().take(inbox=0), T))
    return lines


def _stored(config: InfluxConfig) -> tuple[list[str], list[str], list[str]]:
    messages = [r["message"] for r in influxql(config, "SELECT message FROM alarm WHERE station = 'rt-tower'")]
    tags = [r["t"] for r in influxql(config, "SELECT i, t FROM tagrt")]
    collectors = [r["collector"] for r in influxql(config, "SELECT messages, collector FROM collector")]
    return messages, tags, collectors


def test_text_is_stored_exactly_as_sent_through_v1_write(influxd):
    db = influx(influxd.port, "roundtrip_v1")
    InfluxV1Sink(db).write(_round_trip_lines())
    assert _stored(db) == (MESSAGES, TAGS, ["collector\\1 a,b=c"])


def test_text_is_stored_exactly_as_sent_through_v2_write(influxd):
    influx(influxd.port, "roundtrip_v2")
    shim = V2WriteShim(f"http://127.0.0.1:{influxd.port}")
    try:
        sink = InfluxV2Sink(InfluxConfig(url=shim.url, api=2, bucket="roundtrip_v2/autogen", token="u:p"))
        sink.write(_round_trip_lines())
        sink.close()
    finally:
        shim.stop()
    db = InfluxConfig(url=f"http://127.0.0.1:{influxd.port}", database="roundtrip_v2")
    assert _stored(db) == (MESSAGES, TAGS, ["collector\\1 a,b=c"])


@pytest.mark.parametrize("value", ["ends\\", "a\\,b", "a\\ b", "a\\=b", "", "new\nline", "cr\r"])
def test_tag_values_influxdb_cannot_store_as_sent_are_refused(value):
    """InfluxDB 1.x keeps a backslash literally except before ',', '=' or ' ', and has no way to write
    one there or at the end; writing such a value would store something else, so it is refused."""
    with pytest.raises(ValueError, match="cannot be stored"):
        escape_tag(value)
