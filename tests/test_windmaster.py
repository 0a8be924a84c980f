"""Gill WindMaster ASCII parser, checksum, w-boost firmware detection and emulated device."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import MUTATION, mutate

from firmware_bridge import windmaster as wm
from firmware_bridge.turbulence import TurbulenceModel, observe

# shared/reference/instruments.md section 3: generated M1 line.
VECTOR = b"\x02Q,+001.23,-000.57,+000.09,M,+347.12,+026.08,00,\x032B\r\n"
ROW_KEYS = ("u", "v", "w", "t_sonic", "speed_of_sound", "diag")


def observations(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    return observe(TurbulenceModel(seed=seed).draw(n), 100.0)


def frames(n: int, seed: int = 1, **device_options) -> list[bytes]:
    return wm.Device(seed=seed, **device_options).frames(observations(n, seed), 0)


def frame(body: bytes) -> bytes:
    """A correctly checksummed frame around ``body``."""
    return b"\x02" + body + b"\x03" + f"{wm.checksum(body):02X}".encode() + b"\r\n"


def as_tuples(batch) -> list[tuple]:
    return [tuple(row[k] for k in ROW_KEYS) for row in batch.rows()]


def feed_split(data: bytes, cuts, parser: wm.Parser | None = None):
    parser = parser or wm.Parser()
    rows, boost = [], []
    start = 0
    for stop in [*sorted(set(cuts)), len(data)]:
        batch = parser.feed(data[start:stop])
        rows += as_tuples(batch)
        boost += batch.columns["w_boost"].tolist()
        start = stop
    return parser, rows, boost


def is_subsequence(needles: list[tuple], haystack: list[tuple]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needles)


@pytest.mark.parametrize("body, expected", [
    (b"Q,+001.23,-000.57,+000.09,M,+347.12,+026.08,00,", 0x2B),
    (b"Q,229,002.74,M,00,", 0x16),
    (b"Q,156,000.05,M,00,", 0x19),
    (b"Q,,000.04,M,00,", 0x2A),
    (b"Q,+000.05,+000.00,M,00,", 0x35),
])
def test_checksum_vectors(body, expected):
    assert wm.checksum(body) == expected


def test_reference_vector_decodes_to_documented_values():
    parser = wm.Parser()
    batch = parser.feed(VECTOR)
    row = batch.rows()[0]
    assert (row["u"], row["v"], row["w"]) == (1.23, -0.57, 0.09)
    assert (row["speed_of_sound"], row["t_sonic"], row["diag"], row["w_boost"]) == (347.12, 26.08, 0, False)
    assert batch.end_offsets.tolist() == [len(VECTOR)]
    assert parser.stats.as_dict() == {**wm.ParseStats().as_dict(), "frames_ok": 1}


def test_encoder_reproduces_reference_vector():
    assert wm.encode_frame(1.23, -0.57, 0.09, 347.12, 26.08) == VECTOR


def test_field_list_windsonic_uv_line_from_the_manual():
    parser = wm.Parser(fields=("u", "v", "units", "status"))
    row = parser.feed(b"\x02Q,+000.05,+000.00,M,00,\x0335\r\n").rows()[0]
    assert (row["u"], row["v"], row["w"], row["diag"]) == (0.05, 0.0, None, 0)
    assert parser.stats.frames_ok == 1 and parser.stats.nan_records == 0  # w is not configured
    with pytest.raises(ValueError):
        wm.Parser(fields=("u", "v", "direction"))


def test_optional_analogue_and_prt_fields():
    fields = (*wm.DEFAULT_FIELDS, "analog1", "analog2", "analog3", "analog4", "prt")
    body = b"Q,+001.23,-000.57,+000.09,M,+347.12,+026.08,00,+1.1111,+2.2222,-3.3333,+4.4444,+22.51C,"
    parser = wm.Parser(fields=fields)
    row = parser.feed(frame(body)).rows()[0]
    assert (row["analog1"], row["analog3"], row["prt"], row["u"]) == (1.1111, -3.3333, 22.51, 1.23)
    assert wm.Parser().feed(frame(body)).n == 0  # default field list: wrong field count
    assert wm.Parser(fields=fields).feed(VECTOR).n == 0


def test_wrong_field_count_and_bad_fields_are_malformed():
    bad = [b"Q,+001.23,M,00,", b"Q,+001.23,-000.57,+000.09,X,+347.12,+026.08,00,",
           b"Q,+001.23,-000.57,+000.09,M,+347.12,+026.08,0G,", b"Q,+0x1.2,-000.57,+000.09,M,+347.12,+026.08,00,",
           b"", b"Q,+,-000.57,+000.09,M,+347.12,+026.08,00,"]
    parser = wm.Parser()
    assert parser.feed(b"".join(frame(b) for b in bad)).n == 0
    assert parser.stats.malformed == len(bad) and parser.stats.checksum_errors == 0


@pytest.mark.parametrize("letter, factor", [(b"M", 1.0), (b"N", 0.514444), (b"P", 0.44704), (b"K", 1 / 3.6)])
def test_units_are_converted_to_m_s(letter, factor):
    body = b"Q,+010.00,-002.00,+000.50," + letter + b",+347.12,+026.08,00,"
    row = wm.Parser().feed(frame(body)).rows()[0]
    assert row["u"] == pytest.approx(10 * factor, rel=1e-5) and row["w"] == pytest.approx(0.5 * factor, rel=1e-5)
    assert row["speed_of_sound"] == 347.12  # speed of sound is always m/s


def test_high_resolution_j2_round_trip():
    obs = observations(50, seed=2)
    recs = wm.Device(seed=2, high_resolution=True).frames(obs, 0)
    assert recs[0].count(b".") == 5 and len(recs[0].split(b",")[1]) == 8  # +UUU.UUU
    batch = wm.Parser().feed(b"".join(recs))
    assert np.max(np.abs(batch.columns["w"] - obs["w"])) <= 0.0005 + 1e-12


def test_error_data_empty_or_nine_padded_fields_are_nan():
    empty = frame(b"Q,,,,M,,,07,")
    nines = frame(b"Q,+999.99,+999.99,+999.99,M,+999.99,+999.99,01,")
    parser = wm.Parser()
    batch = parser.feed(empty + nines + VECTOR + frame(b"Q,+009.99,-099.99,+000.09,M,+347.12,+026.08,0B,"))
    assert np.isnan(batch.columns["u"][:2]).all() and np.isnan(batch.columns["speed_of_sound"][:2]).all()
    assert batch.columns["v"][3] == -99.99 and batch.columns["u"][3] == 9.99  # genuine values stay
    assert parser.stats.nan_records == 2 and parser.stats.frames_ok == 4
    assert batch.columns["diag"].tolist() == [7, 1, 0, 11]
    assert wm.valid(batch.columns).tolist() == [False, False, True, True]


def test_status_codes_flags_and_validity():
    diag = np.arange(0, 13)
    flags = wm.decode_flags(diag)
    for code, name in wm.STATUS_CODES.items():
        assert flags[name].tolist() == (diag == code).tolist()
    assert not flags["w_boost"].any() and wm.decode_flags(diag, True)["w_boost"].all()
    cols = {"diag": diag, "u": np.ones(13), "v": np.ones(13), "w": np.ones(13)}
    assert wm.valid(cols).tolist() == [True] + [False] * 9 + [True, True, False]
    cols["u"][0] = np.nan
    assert not wm.valid(cols)[0]


def test_device_round_trip_over_random_chunk_splits():
    n = 400
    obs = observations(n, seed=4)
    recs = wm.Device(seed=4).frames(obs, 0)
    data = b"".join(recs)
    rng = np.random.default_rng(6)
    cuts = rng.choice(len(data), 150, replace=False)
    parser, rows, _ = feed_split(data, cuts)
    table = np.array(rows, dtype=float)
    assert len(rows) == n
    for i, name in enumerate(("u", "v", "w", "t_sonic")):
        assert np.max(np.abs(table[:, i] - obs[name])) <= 0.005 + 1e-9
    assert np.max(np.abs(table[:, 4] - wm.speed_of_sound_m_s(obs["t_sonic"]))) <= 0.005 + 1e-9
    assert parser.stats.as_dict() == {**wm.ParseStats().as_dict(), "frames_ok": n}
    whole = wm.Parser().feed(data)
    assert whole.end_offsets.tolist() == np.cumsum([len(r) for r in recs]).tolist()


def test_every_truncation_point_spares_the_next_frame():
    recs = frames(3, seed=7)
    full = as_tuples(wm.Parser().feed(b"".join(recs)))
    for k in range(1, len(recs[1])):
        parser = wm.Parser()
        rows = as_tuples(parser.feed(recs[0] + recs[1][:k] + recs[2]))
        complete = k >= len(recs[1]) - 2  # STX .. ETX hh present, only the line end is missing
        assert rows == (full if complete else [full[0], full[2]]), k
        assert parser.stats.malformed == (0 if complete else 1), k
        assert parser.stats.resyncs == 0 and parser.stats.checksum_errors == 0, k


def test_garbage_truncation_bad_checksums_and_banner_are_counted_exactly():
    dev = wm.Device(seed=2)
    recs = dev.frames(observations(20, seed=2), 0)
    banner = wm.Device(firmware="2329-602-01").banner()
    stream = b"".join([
        *recs[:3],
        b"\xff\xfe",                  # noise glued to frame 3: one resync of 2 bytes
        *recs[3:5],
        recs[5][:20],                 # frame 5 cut short: malformed, frame 6 survives
        *recs[6:8],
        dev.corrupt(recs[8]),         # a digit changed: checksum error
        *recs[9:11],
        banner,                       # text: neither error nor resync, teaches the firmware
        *recs[11:13],
        recs[13][1:],                 # frame 13 without its STX: a garbage line
        *recs[14:16],
        frame(b"Q,+001.23,M,00,"),    # wrong field count: malformed
        b"hello\r\n",                 # printable text line
        *recs[16:],
    ])
    parser = wm.Parser()
    batch = parser.feed(stream)
    s = parser.stats
    assert batch.n == 17 and s.frames_ok == 17
    assert (s.checksum_errors, s.malformed) == (1, 2)
    assert (s.resyncs, s.bytes_skipped) == (2, 2 + len(recs[13]) - 1)
    assert s.nan_records == 0 and s.counter_gaps == 0
    assert batch.columns["w_boost"].tolist() == [False] * 9 + [True] * 8
    assert parser.firmware == "2329-602-01" and parser.w_boost
    assert "hello" in parser.text_lines and "WINDMASTER PRO (Gill Instruments Ltd)" in parser.text_lines


def test_corrupt_always_gives_exactly_one_checksum_error():
    dev = wm.Device(seed=3)
    recs = dev.frames(observations(300, seed=3), 0)
    damaged = [dev.corrupt(r) if i % 3 == 1 else r for i, r in enumerate(recs)]
    assert all(d.startswith(b"\x02") and d.endswith(b"\r\n") and len(d) == len(r)
               for d, r in zip(damaged, recs, strict=True))
    parser = wm.Parser()
    parser.feed(b"".join(damaged))
    assert parser.stats.checksum_errors == 100 and parser.stats.frames_ok == 200
    assert parser.stats.malformed == 0 and parser.stats.resyncs == 0


@pytest.mark.parametrize("text, firmware, boost", [
    (b"2329.602.1", "2329.602.1", True),
    (b"2329-602-01", "2329-602-01", True),
    (b"2329.702.03", "2329.702.03", False),
    (b"2329-700-01", "2329-700-01", False),
    (b"WINDSONIC (Gill Instruments Ltd) 2368-110-01", "2368-110-01", False),
    (b"FIRMWARE: 2329 - 699", "2329-699", True),
    (b"CHECKSUM ROM:E15C E15C *PASS*", None, False),
    (b"12329.602.1 or 2329.602.1234", None, False),
])
def test_firmware_in_banner_lines(text, firmware, boost):
    parser = wm.Parser()
    parser.feed(text + b"\r\n" + VECTOR)
    assert parser.firmware == firmware and parser.w_boost is boost
    assert parser.stats.resyncs == 0 and parser.stats.malformed == 0


def test_firmware_option_and_banner_override():
    parser = wm.Parser(firmware="2329.602.1")
    assert parser.w_boost and parser.feed(VECTOR).columns["w_boost"].tolist() == [True]
    parser.feed(wm.Device(firmware="2329.704.02").banner())
    assert parser.firmware == "2329.704.02" and not parser.w_boost
    assert parser.feed(VECTOR).columns["w_boost"].tolist() == [False]
    assert wm.firmware_w_boost("2329.602.1") and not wm.firmware_w_boost(None)


def test_device_commands_configuration_mode_settings_and_banner():
    dev = wm.Device(seed=1, firmware="2329.602.1")
    parser = wm.Parser()
    obs = observations(5)
    wire = b"".join(dev.frames(obs, 0))
    assert wm.command_config_mode() == b"*" and wm.command_start(20) == b""
    reply = dev.receive(wm.command_config_mode())
    assert reply == b"CONFIGURATION MODE\r\n" and not dev.streaming
    reply += dev.receive(b"D") + dev.receive(b"3\r")  # commands may arrive split
    assert reply.endswith(b"M1,U1,O1,L1,P8,B4,H1,NQ,E1,T1,S1,C2,A1,I1,J1,V1,X1,G0,K50\r\n")
    assert dev.receive(b"P6\r") == b"P6\r\n" and b"P6" in dev.receive(wm.command_query_settings())
    assert dev.receive(b"D2\r") == b"2329.602.1\r\n"
    banner = dev.receive(wm.command_measure())
    assert dev.streaming and banner == dev.banner() and b"2329.602.1" in banner and b"*PASS*" in banner
    batch = parser.feed(wire + reply + banner + wire)
    assert parser.stats.as_dict() == {**wm.ParseStats().as_dict(), "frames_ok": 10}
    assert parser.firmware == "2329.602.1" and parser.w_boost
    assert batch.columns["w_boost"].tolist() == [False] * 5 + [True] * 5
    flags = wm.decode_flags(batch.columns["diag"], batch.columns["w_boost"])
    assert flags["w_boost"].tolist() == [False] * 5 + [True] * 5
    assert "CONFIGURATION MODE" in parser.text_lines
    assert dev.receive(b"Q\r") == b"" and dev.receive(b"xyz") == b""  # measurement mode: only * counts


def test_module_shape():
    assert wm.NAME == wm.Device.family == "windmaster" and wm.ROLE == "sonic" and wm.TRANSPORT == "serial"
    assert wm.DEFAULT_BAUD == 19200 and wm.BAUDS == (2400, 4800, 9600, 19200, 38400, 57600)
    assert set(wm.CHANNELS) <= set(wm.UNITS)
    empty = wm.Parser().feed(b"")
    assert tuple(empty.columns) == wm.CHANNELS and empty.n == 0


@pytest.mark.parametrize("condition, codes", [("rain", set(range(1, 8))), ("obstruction", {1}),
                                              ("low_signal", {7})])
def test_device_conditions_report_failure_status(condition, codes):
    dev = wm.Device(seed=1)
    dev.condition = condition
    parser = wm.Parser()
    batch = parser.feed(b"".join(dev.frames(observations(200), 0)))
    assert set(batch.columns["diag"].tolist()) == codes
    assert np.isnan(batch.columns["u"]).all() and parser.stats.nan_records == 200
    assert not wm.valid(batch.columns).any()
    dev.condition = None
    assert wm.valid(wm.Parser().feed(b"".join(dev.frames(observations(10), 0))).columns).all()


def test_overlong_garbage_is_one_resync_in_any_chunking_and_buffer_is_bounded():
    data = b"x" * 3000 + VECTOR + b"\x02" + b"y" * 3000 + b"\r\n" + VECTOR + b"\x01" * 5000 + VECTOR
    results = []
    for size in (len(data), 1000, 7):
        parser, rows, _ = feed_split(data, range(size, len(data), size))
        assert len(rows) == 3 and len(parser._buf) <= wm.MAX_LINE_BYTES
        results.append(parser.stats.as_dict())
    assert results[0] == results[1] == results[2]
    assert results[0]["resyncs"] == 2 and results[0]["bytes_skipped"] == 8000 and results[0]["malformed"] == 1


_TOKENS = [b"\x02", b"\x03", b"\r", b"\n", b",", b"Q", b"+0", b"AB", b"x" * 700, b"\xff" * 500, b"2329-602-01", VECTOR]
_BYTES = st.binary(max_size=3000) | st.lists(st.sampled_from(_TOKENS), max_size=30).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(_BYTES, st.lists(st.integers(0, 20_000), max_size=8))
def test_fuzz_random_bytes_never_raise(data, cuts):
    """Any bytes: no exception, bounded buffer, and (once the last line has ended) the same rows
    and counters however the bytes were chunked."""
    parser, rows, _ = feed_split(data, [c for c in cuts if c <= len(data)])
    assert len(parser._buf) <= wm.MAX_LINE_BYTES
    assert len(rows) <= data.count(b"\x03")
    data += b"\r\n"
    whole, rows, _ = feed_split(data, [])
    chunked, rows2, _ = feed_split(data, [c % (len(data) + 1) for c in cuts])
    assert rows2 == rows and chunked.stats == whole.stats


_NOISE = st.binary(max_size=60) | st.lists(st.sampled_from([b"\x02", b"\x03", b"\r", b"\n", b",", b"Q", b"+0",
                                                            b"1.", b"2329-602-01", b"AB", b"\xff"]),
                                           max_size=12).map(b"".join)
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000),
       st.lists(st.tuples(st.one_of(st.none(), _NOISE), st.one_of(st.none(), MUTATION)), min_size=1, max_size=25),
       st.lists(st.integers(0, 5000), max_size=10))
def test_fuzz_frames_survive_garbage_and_mutations(seed, plan, cuts):
    """Any garbage between frames and mutated frames: nothing raises, every unmutated frame is decoded
    in order (its STX always starts a frame), and chunking changes neither rows nor counters."""
    recs = frames(len(plan), seed=seed % 50 + 1)
    expected_rows = as_tuples(wm.Parser().feed(b"".join(recs)))
    stream, wanted = b"", []
    for i, (garbage, mutation) in enumerate(plan):
        stream += garbage or b""
        stream += recs[i] if mutation is None else mutate(recs[i], mutation)
        if mutation is None:
            wanted.append(expected_rows[i])
    whole, rows, boost = feed_split(stream, [])
    assert is_subsequence(wanted, rows)
    chunked, rows2, boost2 = feed_split(stream, [c % (len(stream) + 1) for c in cuts])
    assert rows2 == rows and boost2 == boost
    assert chunked.stats == whole.stats and chunked.firmware == whole.firmware


def test_r3_layout_without_node_id():
    """R3-50 ASCII: StaA, StaD, U, V, W, speed of sound, PRT temperature; no node ID, no units."""
    body = b"00,00,+001.23,-000.57,+000.09,+347.12,+024.50C,"
    line = b"\x02" + body + b"\x03" + f"{wm.checksum(body):02X}".encode() + b"\r\n"
    parser = wm.Parser(fields=wm.R3_FIELDS, node_id=False)
    row = parser.feed(line).rows()[0]
    assert (row["u"], row["v"], row["w"], row["speed_of_sound"], row["prt"]) == (1.23, -0.57, 0.09, 347.12, 24.5)
    assert row["t_sonic"] == pytest.approx(347.12**2 / wm.GAMMA_RD - 273.15)
    assert wm.Parser().feed(line).n == 0  # the M1 layout rejects it
