"""The AmeriFlux format checker finds each broken rule (collector/science/amfcheck.py), and the
export writes files it passes, gaps and all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collector.science import amfcheck, export

GOOD = """TIMESTAMP_START,TIMESTAMP_END,FC,FC_SSITC_TEST,TA,TS_1_2_1
202601010000,202601010030,-1.5,0,25.1,24.0
202601010030,202601010100,-9999,-9999,25.0,24.0
202601010100,202601010130,2.25,1,-9999,23.9
"""
NAME = "US-Mg1_HH_202601010000_202601010130.csv"


def write(tmp_path, text=GOOD, name=NAME):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_file_passes(tmp_path):
    assert amfcheck.check(write(tmp_path)) == []


@pytest.mark.parametrize(("change", "says"), [
    (lambda t, n: (t, "US-Mg1_30m_202601010000_202601010130.csv"), "file name"),
    (lambda t, n: (t, "US-Mg1_HH_202601010000_202601010200.csv"), "the file name says"),
    (lambda t, n: (t.replace("TIMESTAMP_START,TIMESTAMP_END", "TIMESTAMP_END,TIMESTAMP_START"), n), "first columns"),
    (lambda t, n: (t.replace(",TA,", ",FC,"), n), "more than once"),
    (lambda t, n: (t.replace(",TA,", ",AIRTEMP,"), n), "no AmeriFlux variable name"),
    (lambda t, n: (t.replace("202601010030,202601010100", "202601010040,202601010110"), n), "consecutive"),
    (lambda t, n: (t.replace("202601010100,202601010130", "202601010100,202601010200"), n), "not 0:30:00"),
    (lambda t, n: (t.replace("202601010000,202601010030", "2026-01-01 00:00,202601010030"), n), "YYYYMMDDHHMM"),
    (lambda t, n: (t.replace("-9999,-9999,25.0", ",-9999,25.0"), n), "missing value other than -9999"),
    (lambda t, n: (t.replace("-9999,-9999,25.0", "NaN,-9999,25.0"), n), "missing value other than -9999"),
    (lambda t, n: (t.replace("-9999,-9999,25.0", "-9999.0,-9999,25.0"), n), "missing value other than -9999"),
    (lambda t, n: (t.replace("25.1", "125.1"), n), "outside"),
    (lambda t, n: (t.replace(",24.0\n", ",-9999\n").replace(",23.9\n", ",-9999\n"), n), "missing in every row"),
    (lambda t, n: (t.replace(",0,25.1", ",0,25.1,7"), n), "fields, the header has"),
])
def test_each_rule_is_checked(tmp_path, change, says):
    text, name = change(GOOD, NAME)
    problems = amfcheck.check(write(tmp_path, text, name))
    assert any(says in p for p in problems), problems


def frame(period_s=1800, site_id="US-Mg1"):
    index = pd.date_range("2026-01-01 00:30", periods=6, freq=f"{period_s}s", tz="Etc/GMT+6", name="TIMESTAMP_END")
    df = pd.DataFrame({"FC": [1.0, np.nan, -2.5, np.nan, 0.1, 3e-7], "FC_SSITC_TEST": [0, np.nan, 1, np.nan, 2, 0],
                       "TA": [25.0] * 6, "W_TS_COV": [0.1] * 6, "FCH4": [np.nan] * 6}, index=index)
    df.attrs.update(period_s=period_s, site_id=site_id)
    return df


def test_the_export_passes_the_checker_and_leaves_out_what_is_no_ameriflux_variable(tmp_path):
    path = export.write(frame(), tmp_path)
    assert path.name == "US-Mg1_HH_202601010000_202601010300.csv"
    assert amfcheck.check(path) == []
    header = path.read_text().splitlines()[0]
    assert header == "TIMESTAMP_START,TIMESTAMP_END,FC,TA,FC_SSITC_TEST"  # no W_TS_COV, no empty FCH4
    assert path.read_text().splitlines()[2] == "202601010030,202601010100,-9999,25.0,-9999"


def test_hourly_and_fluxnet_names_and_refusals(tmp_path):
    assert export.file_name(frame(3600)).startswith("US-Mg1_HR_")
    assert export.file_name(frame(), "fluxnet") == "FLX_US-Mg1_FLUXEDGE_SUBSET_HH_2026-2026_1-1.csv"
    with pytest.raises(ValueError, match="half-hourly or hourly"):
        export.write(frame(600), tmp_path)
    with pytest.raises(ValueError, match="no AmeriFlux site id"):
        export.write(frame(site_id=None), tmp_path)
    with pytest.raises(ValueError, match="not equally spaced"):
        export.write(frame().drop(frame().index[2]), tmp_path)
