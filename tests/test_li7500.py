"""LI-7500 family text parser and encoder."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import li7500

# shared/reference/instruments.md section 4, a real labelled record.
LABELLED = (b"(Data (Ndx 1545)(DiagVal 250)(CO2Raw 1.5386712e-1)(CO2D 3.2183277e1)(H2ORaw 3.5775542e-2)"
            b"(H2OD 1.9687008e2)(Temp 2.4227569e1)(Pres 9.8640356e1)(Aux 0)(Cooler 1.5756724))\n")


def test_labelled_record_from_the_manual():
    parser = li7500.Parser()
    row = parser.feed(LABELLED).rows()[0]
    assert row["index"] == 1545 and row["diag"] == 250
    assert row["co2"] == pytest.approx(32.183277) and row["h2o"] == pytest.approx(196.87008)
    assert row["temperature"] == pytest.approx(24.227569) and row["pressure"] == pytest.approx(98.640356)
    assert row["signal_strength"] == pytest.approx(10 * 6.67)  # 250 = 0xFA: code 10
    assert all(flag[0] for flag in li7500.decode_flags(np.array([250])).values())


def test_original_li7500_reports_agc():
    parser = li7500.Parser(model="li7500")
    assert parser.feed(LABELLED).rows()[0]["signal_strength"] == pytest.approx(62.5)


def test_tab_separated_output_in_configured_order():
    parser = li7500.Parser(columns=("Ndx", "CO2D", "H2OD", "Pres", "DiagVal", "Temp"))
    row = parser.feed(b"7\t15.1234\t354.123\t101.3\t249\t25.5\r\n").rows()[0]
    assert (row["index"], row["co2"], row["h2o"], row["pressure"], row["diag"], row["temperature"]) == \
        (7, 15.1234, 354.123, 101.3, 249, 25.5)


def test_encoder_round_trip_across_chunks_and_gaps():
    n = 50
    rng = np.random.default_rng(5)
    co2, h2o = rng.normal(16, 0.2, n), rng.normal(900, 20, n)
    idx = np.arange(n)
    idx[30:] += 4  # four records lost
    data = li7500.encode(idx, np.full(n, 0xFF), co2, h2o, np.full(n, 25.0), np.full(n, 100.1))
    parser = li7500.Parser()
    parts = [parser.feed(data[i:i + 37]) for i in range(0, len(data), 37)]
    got = np.concatenate([p.columns["co2"] for p in parts])
    assert np.allclose(got, co2, rtol=1e-7)
    assert parser.stats.counter_gaps == 1 and parser.stats.samples_missed == 4


def test_garbage_lines_are_counted_not_raised():
    parser = li7500.Parser()
    batch = parser.feed(b"\x00\xffnoise\n(Data (Ndx 1)(CO2D abc))\n#$%" + LABELLED + b"1\t2\n")
    assert batch.n == 1
    assert parser.stats.malformed == 3 and parser.stats.resyncs == 1


def test_screening_rejects_records_with_a_failed_subsystem():
    cols = {"diag": np.array([0xFF, 0x7F, 0xEF])}  # chopper bad; sync bad
    assert li7500.valid(cols).tolist() == [True, False, False]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data):
    parser = li7500.Parser()
    parser.feed(data)
    assert len(parser._buf) <= li7500.MAX_LINE_BYTES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), min_size=1, max_size=6))
def test_fuzz_records_after_garbage_lines_still_decode(garbage):
    stream = b"".join(g + b"\n" + LABELLED for g in garbage)
    batch = li7500.Parser().feed(stream)
    assert batch.n >= len(garbage)
    assert np.allclose(batch.columns["co2"][-len(garbage):], 32.183277)
