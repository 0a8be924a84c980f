"""Must show (issue 17): fluxes computed from shared/data/ec, published by a station's spool and
publisher, collected into InfluxDB, then queried and exported: the exported values are the computed
ones, exactly; time stamps in the site's local standard time; a period nobody sent is a -9999 row;
met records averaged over their periods; the file passes the AmeriFlux format checker.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from collector_helpers import influx, start_collector, stop, write_config

from collector.query import influxql
from collector.science import amfcheck, frame
from fluxedge.common import messages
from fluxedge.common.messages import FLUX_FIELDS, FluxRecord, MetRecord
from fluxedge.common.mqttconfig import MqttConfig
from station.outbox.publisher import Publisher
from station.outbox.spool import Spool
from station.reprocess.command import process_file

ROOT = Path(__file__).resolve().parents[1]
DEGEB = ROOT.parent / "shared" / "data" / "ec" / "degeb-hs50-li7200-20hz" / "raw"
CLI = [sys.executable, "-m", "fluxedge.cli"]
STATION, PREFIX, SITE = "geb-01", "sci1", "DE-Geb"
SKIPPED = 2  # the third period is never sent: a gap row


def computed_periods() -> list[FluxRecord]:
    """The engine's results for the four DE-Geb .ghg files (EddyPro's defaults), as station records."""
    records = []
    for seq, path in enumerate(sorted(DEGEB.glob("*.ghg"))):
        (row,) = process_file(str(path)).rows
        values = {k: float(row.results[k]) for k in FLUX_FIELDS if k in row.results}
        records.append(FluxRecord(STATION, seq, round(row.start_unix), round(row.end_unix),
                                  {k: (v if np.isfinite(v) else None) for k, v in values.items()}))
    return records


def met_records(fluxes: list[FluxRecord]) -> list[MetRecord]:
    """One record a minute over the four periods, stamped at each minute's end, with known values."""
    first, last = fluxes[0].period_start, fluxes[-1].period_end
    out = []
    for t in range(first + 60, last + 1, 60):
        k = (t - first) // 60
        out.append(MetRecord(float(t), {"TA": 2.0 + 0.01 * k, "RH": 80.0 + 0.1 * (k % 7), "PA": 99.5,
                                        "SW_IN": 0.0, "P": 0.1 if k % 10 == 0 else 0.0, "TS_1": 3.0 + 0.001 * k}))
    return out


def publish_as_a_station(tmp_path, port: int, fluxes: list[FluxRecord], met: list[MetRecord]) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    for i, rec in enumerate(fluxes):
        if i != SKIPPED:
            spool.put("flux", messages.topic(PREFIX, STATION, "flux"), rec.encode())
    for i in range(0, len(met), 30):
        spool.put("met", messages.topic(PREFIX, STATION, "met"), messages.encode_batch("met", STATION, met[i:i + 30]))
    config = MqttConfig(port=port, topic_prefix=PREFIX)
    status = messages.topic(PREFIX, STATION, "status")
    publisher = Publisher(spool, config, STATION, status, b'{"state":"online"}', b'{"state":"offline"}')
    publisher.start()
    deadline = time.monotonic() + 30
    while publisher.published < spool.depth() + publisher.published and time.monotonic() < deadline:
        if spool.depth() == 0:
            break
        time.sleep(0.1)
    publisher.stop()
    assert spool.depth() == 0, "the station's spool was not drained"


@pytest.fixture(scope="module")
def collected(tmp_path_factory, mosquitto, influxd):
    tmp = tmp_path_factory.mktemp("science")
    db = influx(influxd.port, "science")
    config = write_config(tmp / "collector.toml", mosquitto.port, db.url, "science", PREFIX, "sci-collector",
                          alarms="enabled = false\n")
    config.write_text(config.read_text() + f'[[site]]\nstation = "{STATION}"\nid = "{SITE}"\n'
                                           f'time_zone = "Europe/Berlin"\n')
    collector = start_collector(config, tmp / "collector.log")
    fluxes = computed_periods()
    met = met_records(fluxes)
    try:
        publish_as_a_station(tmp, mosquitto.port, fluxes, met)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = influxql(db, "SELECT count(FC) FROM flux")
            met_rows = influxql(db, "SELECT count(TA) FROM met")
            if rows and rows[0]["count"] == 3 and met_rows and met_rows[0]["count"] == len(met):
                break
            time.sleep(0.2)
    finally:
        stop(collector)
    return tmp, config, db, fluxes, met


def test_the_export_carries_the_computed_values_exactly(collected):
    tmp, config, _, fluxes, met = collected
    out = tmp / "export"
    out.mkdir()
    # one period before and one after the data: rows of -9999 too (local standard time = UTC+1 in Berlin)
    done = subprocess.run([*CLI, "export", "--format", "ameriflux", "--station", STATION, "--from",
                           "2016-12-11T19:30", "--to", "2016-12-11T22:30", "-o", str(out), "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (path,) = out.iterdir()
    assert path.name == f"{SITE}_HH_201612111930_201612112230.csv"
    assert amfcheck.check(path) == []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["TIMESTAMP_START"] for r in rows] == ["201612111930", "201612112000", "201612112030", "201612112100",
                                                    "201612112130", "201612112200"]
    # the .ghg files are named by their local start (Europe/Berlin, winter = standard time)
    names = [p.name[:17] for p in sorted(DEGEB.glob("*.ghg"))]
    assert [r["TIMESTAMP_START"] for r in rows[1:5]] == [n.replace("-", "").replace("T", "")[:12] for n in names]
    empty = [rows[0], rows[1 + SKIPPED], rows[-1]]
    fluxcols = [c for c in rows[0] if c in FLUX_FIELDS and c not in ("TA", "PA")]
    for r in empty:
        assert all(r[c] == "-9999" for c in fluxcols), r
    for rec, r in zip(fluxes, rows[1:5], strict=True):
        if rec.seq == SKIPPED:
            continue
        for name, value in rec.values.items():
            if name in ("TA", "PA") or name not in r:
                continue  # TA and PA: the met sensor's mean replaces the engine's
            expected = "-9999" if value is None else (str(int(value)) if name.endswith("_SSITC_TEST") else repr(value))
            assert r[name] == expected, (name, r[name], value)
        # met: the mean of the records in (start, end], precipitation summed
        inside = [m for m in met if rec.period_start < m.time <= rec.period_end]
        assert len(inside) == 30
        assert float(r["TA"]) == pytest.approx(np.mean([m.values["TA"] for m in inside]), rel=1e-12)
        assert float(r["P"]) == pytest.approx(sum(m.values["P"] for m in inside), rel=1e-12)
        assert float(r["TS_1"]) == pytest.approx(np.mean([m.values["TS_1"] for m in inside]), rel=1e-12)
    # the met sensor measured during the skipped period: its row has met, no fluxes
    assert rows[1 + SKIPPED]["TA"] != "-9999" and rows[1 + SKIPPED]["FC"] == "-9999"


def test_query_gives_the_same_values_as_json_and_as_a_dataframe(collected):
    _, config, db, fluxes, _ = collected
    done = subprocess.run([*CLI, "query", "--station", STATION, "--from", "2016-12-11T20:00", "--to",
                           "2016-12-11T22:00", "--vars", "FC,LE,H", "--format", "json", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["utc_offset"] == "UTC+01:00" and doc["units"]["FC"] == "umol m-2 s-1"
    got = {r["TIMESTAMP_END"]: r for r in doc["rows"]}
    assert sorted(got) == ["2016-12-11T20:30:00+01:00", "2016-12-11T21:00:00+01:00", "2016-12-11T22:00:00+01:00"]
    sent = [f for f in fluxes if f.seq != SKIPPED]
    assert [got[k]["FC"] for k in sorted(got)] == [f.values["FC"] for f in sent]
    assert set(doc["rows"][0]) == {"TIMESTAMP_END", "FC", "LE", "H", "FC_SSITC_TEST", "LE_SSITC_TEST", "H_SSITC_TEST"}

    site = frame.SiteTime.of("Europe/Berlin")
    start = frame.parse_time("2016-12-11T20:00", site)
    end = frame.parse_time("2016-12-11T22:00", site)
    df = frame.load(db, STATION, start, end, site=site, site_id=SITE, qc_max=0)
    assert len(df) == 4 and df.index.name == "TIMESTAMP_END" and str(df.index.tz) == "UTC+01:00"
    assert df.attrs["units"]["LE"] == "W m-2" and df.attrs["period_s"] == 1800
    assert df.iloc[SKIPPED].drop(["TA", "RH", "PA", "SW_IN", "P", "TS_1"]).isna().all()
    for f in sent:
        row = df.loc[frame.pd.Timestamp(f.period_end, unit="s", tz="UTC")]
        flag = f.values["FC_SSITC_TEST"]
        assert (row["FC"] == f.values["FC"]) if flag == 0 else np.isnan(row["FC"]), (flag, row["FC"])


def test_bad_requests_are_one_line(collected):
    _, config, _, _, _ = collected
    for args, says in ((["--from", "yesterday", "--to", "2016-12-12"], "expected ISO 8601"),
                       (["--from", "2016-12-12", "--to", "2016-12-11"], "the range is empty"),
                       (["--from", "2016-12-11", "--to", "2016-12-12", "--vars", "FCX"], "unknown variable 'FCX'"),
                       (["--from", "2016-01-01", "--to", "2016-01-02"], "no data of station")):
        done = subprocess.run([*CLI, "query", "--station", STATION, *args, "-c", str(config)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
