"""CSAT3 binary parser and encoder."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import csat3

# shared/reference/instruments.md section 1: u=+1.234, v=-0.567, w=+0.089 m/s, c=347.123 m/s,
# flags 0, ranges code 3, counter 5.
VECTOR = bytes.fromhex("48 13 24 F7 64 01 D3 1B C5 0F 55 AA")


def frames(n, seed=0, first_counter=0):
    rng = np.random.default_rng(seed)
    u, v, w = rng.normal(2, 1.5, n), rng.normal(0, 1.0, n), rng.normal(0, 0.4, n)
    ts = rng.normal(25, 1, n)
    return (u, v, w, ts), csat3.encode(u, v, w, ts, (first_counter + np.arange(n)) % 64)


def test_reference_vector_decodes_to_documented_values():
    batch = csat3.Parser().feed(VECTOR)
    assert batch.n == 1
    row = batch.rows()[0]
    assert row["u"] == pytest.approx(1.234, abs=1e-9)
    assert row["v"] == pytest.approx(-0.567, abs=1e-9)
    assert row["w"] == pytest.approx(0.089, abs=1e-9)
    assert row["speed_of_sound"] == pytest.approx(347.123, abs=1e-9)
    assert row["t_sonic"] == pytest.approx(26.08, abs=0.005)
    assert row["diag"] == 0x0FC5 and row["counter"] == 5


def test_encoder_reproduces_reference_vector():
    ts = csat3.t_sonic_degc(np.array([347.123]))
    assert csat3.encode([1.234], [-0.567], [0.089], ts, [5]) == VECTOR


def test_round_trip_within_quantisation_and_range_switching():
    (u, v, w, ts), data = frames(500)
    u[:10] = [12.0, -20.0, 40.0, -60.0, 8.0, 0.0, 0.001, -0.001, 16.0, 30.0]
    data = csat3.encode(u, v, w, ts, np.arange(500) % 64)
    batch = csat3.Parser().feed(data)
    scale = np.array([csat3.RANGE_SCALE_M_S[csat3._range_code(np.array([x]))[0]] for x in u])
    assert np.all(np.abs(batch.columns["u"] - u) <= scale / 2 + 1e-12)
    assert np.allclose(batch.columns["v"], v, atol=0.00025)
    assert np.allclose(batch.columns["t_sonic"], ts, atol=0.002)


def test_split_feeds_give_the_same_frames_as_one_feed():
    _, data = frames(200, seed=1)
    whole = csat3.Parser().feed(data)
    parser = csat3.Parser()
    rng = np.random.default_rng(2)
    cuts = np.sort(rng.choice(len(data), 60, replace=False))
    parts = [parser.feed(chunk) for chunk in np.split(np.frombuffer(data, np.uint8), cuts)]
    got = np.concatenate([p.columns["u"] for p in parts])
    assert np.array_equal(got, whole.columns["u"])
    assert parser.stats.frames_ok == 200 and parser.stats.resyncs == 0


def test_resync_after_garbage_and_truncated_frame():
    _, data = frames(30, seed=3)
    stream = b"\x13\x37junk" + data[:120] + data[125:132] + b"\xff" * 9 + data[132:]
    parser = csat3.Parser()
    batch = parser.feed(stream)
    # frame 10 lost its first 5 bytes; the truncated remainder and the noise are skipped
    assert batch.n == 29
    # two skipped runs: the 6 leading bytes; the 7-byte remainder of frame 10 with the 9 noise bytes
    assert parser.stats.resyncs == 2 and parser.stats.bytes_skipped == 6 + 7 + 9
    assert parser.stats.counter_gaps == 1 and parser.stats.samples_missed == 1


def test_long_leading_garbage_is_one_resync():
    _, data = frames(5, seed=6)
    parser = csat3.Parser()
    assert parser.feed(b"\xee" * 30 + data).n == 5
    assert parser.stats.resyncs == 1 and parser.stats.bytes_skipped == 30


def test_counter_gap_counts_missing_samples():
    _, data = frames(20, seed=4)
    parser = csat3.Parser()
    parser.feed(data[:5 * 12] + data[8 * 12:])
    assert parser.stats.counter_gaps == 1 and parser.stats.samples_missed == 3


def test_nan_records_and_warning_flags():
    data = csat3.encode_special(csat3.DIAG_NOT_AVAILABLE) + csat3.encode_special(csat3.DIAG_LOST_TRIGGER)
    data += csat3.encode([1.0], [0.0], [0.1], [20.0], [7], flags=0b0101)
    parser = csat3.Parser()
    batch = parser.feed(data)
    assert np.isnan(batch.columns["u"][:2]).all() and np.isnan(batch.columns["t_sonic"][:2]).all()
    assert parser.stats.nan_records == 2
    flags = csat3.decode_flags(batch.columns["diag"])
    assert flags["poor_lock"][2] and flags["amplitude_low"][2] and not flags["delta_c_high"][2]
    assert csat3.valid(batch.columns).tolist() == [False, False, False]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_never_raise(data):
    parser = csat3.Parser()
    batch = parser.feed(data)
    assert batch.n <= len(data) // 12
    assert len(parser._buf) <= 11


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=30), min_size=1, max_size=8), st.integers(0, 2**32 - 1))
def test_fuzz_valid_frames_survive_surrounding_garbage(garbage, seed):
    """Whole frames placed between random garbage (without a 55 AA of its own) are all decoded."""
    garbage = [g.replace(b"\x55", b"\x56") for g in garbage]
    _, data = frames(len(garbage) * 3, seed=seed % 1000)
    chunks = [garbage[i] + data[i * 36:(i + 1) * 36] for i in range(len(garbage))]
    parser = csat3.Parser()
    decoded = parser.feed(b"".join(chunks))
    expected = csat3.Parser().feed(data)
    assert np.array_equal(decoded.columns["u"][-expected.n:], expected.columns["u"])
