"""Invalid messages are dead-lettered with their reason and never block what follows (real
mosquitto, real influxd, the collector as a subprocess)."""

import json
import time

from fleet import fleet_messages

from collector.query import influxql
from tests.collector_helpers import (
    Listener,
    Publisher,
    expected_counts,
    influx,
    point_counts,
    start_collector,
    stop,
    wait_for,
    write_config,
)

T0 = 1_795_341_600  # 2026-11-22T10:00:00Z
PREFIX = "dlq"


def met_doc(station, **values):
    return {"schema": 1, "kind": "met", "station": station,
            "records": [{"time": "2026-11-22T10:01:00.000Z", "values": values or {"TA": 20.0}}]}


def flux_doc(station, start, end):
    return {"schema": 1, "kind": "flux", "station": station, "seq": 1, "period_start": start, "period_end": end,
            "values": {"FC": -2.0}}


def alarm_doc(station, message):
    return {"schema": 1, "kind": "alarm", "station": station, "records": [
        {"time": "2026-11-22T10:01:00.000Z", "alarm": "a", "source": "irga", "state": "raised",
         "severity": "warning", "message": message}]}


BAD = [  # (topic station, payload, expected reason)
    ("tower-9000", b"{not json", "malformed JSON"),
    ("tower-9000", b"{not json either", "malformed JSON"),
    ("tower-9001", json.dumps({**met_doc("tower-9001"), "schema": 2}).encode(), "unsupported schema version 2"),
    ("tower-9002", json.dumps(met_doc("tower-9002", TA="warm")).encode(), "value TA must be a number or null, got str"),
    ("tower-9003", json.dumps(met_doc("tower-9003")).replace("20.0", "NaN").encode(), "non-finite number NaN"),
    ("tower-9004", json.dumps(met_doc("tower-9004")).replace("20.0", "1e999").encode(),
     "TA=inf outside plausible range"),
    ("tower-9005", json.dumps(met_doc("tower-9005")).replace("20.0", "-Infinity").encode(),
     "non-finite number -Infinity"),
    ("tower-9006", b'{"schema":1,"pad":"' + b"x" * 70_000 + b'"}', "payload of 70021 bytes exceeds 65536"),
    ("tower-9007", json.dumps(met_doc("tower-0001")).encode(),
     "payload station 'tower-0001' does not match topic station 'tower-9007'"),
    # issue 14: flux periods were not range-checked (1900 and 2250 were stored)
    ("tower-9008", json.dumps(flux_doc("tower-9008", "1900-01-01T00:00:00Z", "1900-01-01T00:30:00Z")).encode(),
     "period_start 1900-01-01T00:00:00Z is outside 1970..2199"),
    ("tower-9009", json.dumps(flux_doc("tower-9009", "2199-12-31T23:30:00Z", "2250-01-01T00:00:00Z")).encode(),
     "period_end 2250-01-01T00:00:00Z is outside 1970..2199"),
    # half a surrogate pair: it used to kill the writer thread (UnicodeEncodeError), stalling ingestion
    ("tower-9010", json.dumps(alarm_doc("tower-9010", "lost \ud800 half")).encode(),
     "message is not valid Unicode text"),
]


def topic_of(station, payload):
    kind = "flux" if b'"kind": "flux"' in payload else "alarm" if b'"kind": "alarm"' in payload else "met"
    return f"{PREFIX}/v1/{station}/{kind}"


def test_invalid_messages_are_dead_lettered_and_ingestion_continues(tmp_path, mosquitto, influxd):
    db = influx(influxd.port, "dlq")
    good = list(fleet_messages(20, T0, 10, prefix=PREFIX))
    dead = Listener(mosquitto.port, f"{PREFIX}/v1/_deadletter", "dlq-listener")
    config = write_config(tmp_path / "c.toml", mosquitto.port, db.url, "dlq", PREFIX, "dlq-collector",
                          batch_size=50, batch_age_s=0.2, metrics_interval_s=0.5)
    collector = start_collector(config, tmp_path / "collector.log")
    publisher = Publisher(mosquitto.port, "dlq-station")
    try:
        bad = [(topic_of(station, payload), payload) for station, payload, _ in BAD]
        mixed = []
        for i, msg in enumerate(good):  # the bad ones spread among the good ones
            mixed.append(msg)
            if i % 5 == 0 and bad:
                mixed.append(bad.pop(0))
        publisher.send(mixed)
        want = expected_counts(good)
        assert wait_for(lambda: point_counts(db) == want, 30), (point_counts(db), want)
        assert wait_for(lambda: len(dead.snapshot()) >= len(BAD), 10)
        letters = [json.loads(p) for _, p in dead.snapshot()]
        assert len(letters) == len(BAD)
        for (station, payload, reason), letter in zip(BAD, letters, strict=True):
            assert letter["topic"] == topic_of(station, payload)
            assert reason in letter["reason"], (reason, letter["reason"])
            assert letter["bytes"] == len(payload)
            assert letter["payload"] == payload[:4096].decode()
        metrics = wait_for(lambda: influxql(db, "SELECT max(dead_letters_total) FROM collector"), 10)
        assert metrics and metrics[0]["max"] == len(BAD)
        stop(collector)
        # everything was acknowledged: the same session, resumed, gets nothing again
        collector = start_collector(config, tmp_path / "collector.log")
        time.sleep(1.0)
        stop(collector)
        assert len(dead.snapshot()) == len(BAD)
    finally:
        publisher.close()
        dead.close()
        stop(collector)
    log = (tmp_path / "collector.log").read_text()
    stops = [line for line in log.splitlines() if "collector_stopped" in line]
    assert len(stops) == 2 and f"acked={len(good)} " in stops[0] and "acked=0 " in stops[1], stops
    assert log.count("dead_letter ") == len(BAD) - 1, log  # the two malformed JSON: one reason, one line
    assert "Traceback" not in log
