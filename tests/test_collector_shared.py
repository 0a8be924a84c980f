"""Two collectors in one shared-subscription group split the load with no loss and no message
handled twice (real mosquitto, real influxd, collectors as subprocesses)."""

from fleet import fleet_messages

from collector.query import influxql
from tests.collector_helpers import (
    Publisher,
    expected_counts,
    influx,
    point_counts,
    start_collector,
    stop,
    wait_for,
    write_config,
)

T0 = 1_795_341_600


def test_two_collectors_split_a_shared_subscription(tmp_path, mosquitto, influxd):
    db = influx(influxd.port, "shared")
    msgs = list(fleet_messages(200, T0, 60, prefix="sh"))
    want = expected_counts(msgs)
    collectors = []
    try:
        for name in ("sh-a", "sh-b"):
            config = write_config(tmp_path / f"{name}.toml", mosquitto.port, db.url, "shared", "sh", name,
                                  share_group="fleet", batch_size=200, batch_age_s=0.3, metrics_interval_s=0.5)
            collectors.append(start_collector(config, tmp_path / f"{name}.log"))
        pub = Publisher(mosquitto.port, "sh-fleet")
        pub.send(msgs)
        pub.close()
        assert wait_for(lambda: point_counts(db) == want, 60), (point_counts(db), want)

        def acked():
            rows = influxql(db, "SELECT sum(messages) FROM collector GROUP BY collector")
            return {r["collector"]: int(r["sum"]) for r in rows}

        assert wait_for(lambda: sum(acked().values()) == len(msgs), 10), acked()
        split = acked()
        assert set(split) == {"sh-a", "sh-b"}
        assert min(split.values()) >= 0.3 * len(msgs), split  # mosquitto deals round-robin
    finally:
        for proc in collectors:
            stop(proc)
