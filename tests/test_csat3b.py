"""CSAT3B ASCII parser, signature and emulated device."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import MUTATION, mutate

from firmware_bridge import csat3b
from firmware_bridge.turbulence import TurbulenceModel, observe

# shared/reference/instruments.md section 2: a real unit's record (signature over Ux..diag) and a
# generated one in both signature coverages.
REAL = b"0.08945,0.06552,0.05726,19.69336,0,5,c3a6\r\n"
GENERATED = b"1.23400,-0.56700,0.08900,26.41000,0,5,1737\r\n"
GENERATED_WITH_COUNTER = b"1.23400,-0.56700,0.08900,26.41000,0,5,b1cf\r\n"
ROW_KEYS = ("u", "v", "w", "t_sonic", "diag", "counter")


def observations(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    return observe(TurbulenceModel(seed=seed).draw(n), 100.0)


def frames(n: int, seed: int = 1, first_index: int = 0, **device_options) -> list[bytes]:
    return csat3b.Device(seed=seed, **device_options).frames(observations(n, seed), first_index)


def as_tuples(batch) -> list[tuple]:
    return [tuple(row[k] for k in ROW_KEYS) for row in batch.rows()]


def feed_split(data: bytes, cuts) -> tuple[csat3b.Parser, list[tuple], list[int]]:
    """Feed ``data`` cut at ``cuts``; decoded rows and absolute frame end offsets."""
    parser = csat3b.Parser()
    rows, ends, start = [], [], 0
    for stop in [*sorted(set(cuts)), len(data)]:
        batch = parser.feed(data[start:stop])
        rows += as_tuples(batch)
        ends += (batch.end_offsets + start).tolist()
        start = stop
    return parser, rows, ends


def is_subsequence(needles: list[tuple], haystack: list[tuple]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needles)


def test_signature_vectors():
    assert csat3b.signature(b"0.08945,0.06552,0.05726,19.69336,0") == 0xC3A6
    assert csat3b.signature(b"1.23400,-0.56700,0.08900,26.41000,0") == 0x1737
    assert csat3b.signature(b"1.23400,-0.56700,0.08900,26.41000,0,5") == 0xB1CF
    assert csat3b.signature(b"") == 0xAAAA


@pytest.mark.parametrize("line, expected", [
    (REAL, (0.08945, 0.06552, 0.05726, 19.69336, 0, 5)),
    (GENERATED, (1.234, -0.567, 0.089, 26.41, 0, 5)),
    (GENERATED_WITH_COUNTER, (1.234, -0.567, 0.089, 26.41, 0, 5)),
])
def test_reference_records_decode_in_both_signature_coverages(line, expected):
    parser = csat3b.Parser()
    batch = parser.feed(line)
    assert as_tuples(batch) == [expected]
    assert batch.end_offsets.tolist() == [len(line)]
    assert parser.stats.as_dict() == {**csat3b.ParseStats().as_dict(), "frames_ok": 1}


def test_wrong_signature_is_a_checksum_error():
    parser = csat3b.Parser()
    assert parser.feed(REAL.replace(b"c3a6", b"c3a7") + REAL.replace(b",0,5,", b",1,5,")).n == 0
    assert parser.stats.checksum_errors == 2 and parser.stats.frames_ok == 0
    # real units do not sign the counter (instruments.md section 2): a changed counter still passes
    assert csat3b.Parser().feed(REAL.replace(b",0,5,", b",0,6,")).columns["counter"].tolist() == [6]


def test_encoder_reproduces_reference_lines():
    assert csat3b.encode_record(1.234, -0.567, 0.089, 26.41, 0, 5) == GENERATED
    assert csat3b.encode_record(1.234, -0.567, 0.089, 26.41, 0, 5, signature_covers_counter=True) \
        == GENERATED_WITH_COUNTER


@pytest.mark.parametrize("covers_counter", [False, True])
def test_device_round_trip_over_random_chunk_splits(covers_counter):
    n = 400
    obs = observations(n, seed=4)
    recs = csat3b.Device(seed=4, signature_covers_counter=covers_counter).frames(obs, 100)
    data = b"".join(recs)
    rng = np.random.default_rng(5)
    parser, rows, ends = feed_split(data, rng.choice(len(data), 150, replace=False))
    table = np.array(rows, dtype=float)
    assert len(rows) == n
    for i, name in enumerate(("u", "v", "w", "t_sonic")):
        assert np.max(np.abs(table[:, i] - obs[name])) <= 5e-6
    assert table[:, 5].tolist() == ((100 + np.arange(n)) % 64).tolist()
    assert ends == np.cumsum([len(r) for r in recs]).tolist()
    assert parser.stats.as_dict() == {**csat3b.ParseStats().as_dict(), "frames_ok": n}


def test_every_truncation_point_spares_the_next_record():
    recs = frames(3, seed=7)
    for k in range(1, len(recs[1])):
        parser = csat3b.Parser()
        rows = as_tuples(parser.feed(recs[0] + recs[1][:k] + recs[2]))
        full = as_tuples(csat3b.Parser().feed(b"".join(recs)))
        assert rows == [full[0], full[2]], k
        assert parser.stats.resyncs == 1 and parser.stats.bytes_skipped == k, k
        assert parser.stats.counter_gaps == 1 and parser.stats.samples_missed == 1


def test_garbage_truncation_and_bad_signatures_are_counted_exactly():
    dev = csat3b.Device(seed=2)
    recs = dev.frames(observations(20, seed=2), 0)
    stream = b"".join([
        *recs[:3],
        b"xyz!",                      # noise without a line feed: glued to record 3, skipped
        *recs[3:6],
        recs[6][:10],                 # record 6 cut short: glued to record 7, skipped
        *recs[7:10],
        dev.corrupt(recs[10]),        # bad signature, framing intact
        *recs[11:13],
        b"noise line\r\n",           # a whole line that is no record
        *recs[13:],
    ])
    parser = csat3b.Parser()
    batch = parser.feed(stream)
    assert batch.columns["counter"].tolist() == [i for i in range(20) if i not in (6, 10)]
    s = parser.stats
    assert (s.frames_ok, s.checksum_errors, s.malformed) == (18, 1, 1)
    assert (s.resyncs, s.bytes_skipped) == (2, 4 + 10)
    assert (s.counter_gaps, s.samples_missed) == (2, 2)


def test_corrupt_always_gives_exactly_one_checksum_error():
    dev = csat3b.Device(seed=3)
    recs = dev.frames(observations(300, seed=3), 0)
    damaged = [dev.corrupt(r) if i % 3 == 1 else r for i, r in enumerate(recs)]
    assert all(d.endswith(b"\r\n") and d.count(b",") == 6 for d in damaged)
    parser = csat3b.Parser()
    parser.feed(b"".join(damaged))
    assert parser.stats.checksum_errors == 100 and parser.stats.frames_ok == 200
    assert parser.stats.malformed == 0 and parser.stats.resyncs == 0


def test_counter_gaps_and_wrap_around():
    recs = frames(140, seed=5, first_index=60)  # counters 60..63, 0..63, 0..11
    parser = csat3b.Parser()
    parser.feed(b"".join(recs[:10]))
    assert parser.stats.counter_gaps == 0
    parser.feed(b"".join(recs[13:50] + recs[51:]))  # 3 dropped, then 1 dropped
    assert parser.stats.counter_gaps == 2 and parser.stats.samples_missed == 4
    assert parser.stats.frames_ok == 136


def test_nan_fields_are_decoded_and_counted():
    line = b"NAN,NAN,NAN,NAN,16,9,"
    body = line[:-3]  # Ux..diag
    rec = line + f"{csat3b.signature(body):04x}".encode() + b"\r\n"
    assert csat3b.encode_record(np.nan, np.nan, np.nan, np.nan, 16, 9) == rec
    parser = csat3b.Parser()
    batch = parser.feed(rec + GENERATED)
    assert np.isnan(batch.columns["u"][0]) and np.isnan(batch.columns["t_sonic"][0])
    assert parser.stats.nan_records == 1 and parser.stats.frames_ok == 2
    assert csat3b.decode_flags(batch.columns["diag"])["acquiring"].tolist() == [True, False]
    assert csat3b.valid(batch.columns).tolist() == [False, True]


def test_flags_and_validity():
    diag = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 32 | 128])
    flags = csat3b.decode_flags(diag)
    assert list(flags) == list(csat3b.FLAG_BITS)
    for name, bit in csat3b.FLAG_BITS.items():
        assert flags[name].tolist() == [bool(d >> bit & 1) for d in diag]
    cols = {"diag": diag, "u": np.zeros(len(diag)), "v": np.zeros(len(diag)), "w": np.zeros(len(diag))}
    # supply low (bit 5) and internal humidity (bit 7) are warnings: data stay valid
    assert csat3b.valid(cols).tolist() == [True, False, False, False, False, False, True, False, True, False, True]
    cols["w"][0] = np.nan
    assert not csat3b.valid(cols)[0]


@pytest.mark.parametrize("condition, bits", [("rain", ("amplitude_low", "poor_lock")),
                                             ("obstruction", ("poor_lock",)),
                                             ("low_signal", ("amplitude_low",))])
def test_device_conditions_raise_diagnostic_bits(condition, bits):
    dev = csat3b.Device(seed=1)
    dev.condition = condition
    batch = csat3b.Parser().feed(b"".join(dev.frames(observations(10), 0)))
    flags = csat3b.decode_flags(batch.columns["diag"])
    assert {name for name, v in flags.items() if v.all()} == set(bits)
    assert not csat3b.valid(batch.columns).any()
    dev.condition = None
    assert csat3b.valid(csat3b.Parser().feed(b"".join(dev.frames(observations(10), 0))).columns).all()


def test_device_takes_no_commands_and_module_shape():
    dev = csat3b.Device()
    assert dev.family == csat3b.NAME == "csat3b" and dev.baud == csat3b.DEFAULT_BAUD == 115200
    assert dev.receive(b"T\r??\rsomething\r") == b"" and dev.streaming
    assert dev.banner() == b"" and csat3b.command_start(20) == b""
    assert csat3b.ROLE == "sonic" and csat3b.TRANSPORT == "serial" and 115200 in csat3b.BAUDS
    assert set(csat3b.CHANNELS) <= set(csat3b.UNITS)
    assert tuple(csat3b.Parser().feed(b"").columns) == csat3b.CHANNELS


def test_overlong_line_is_one_resync_in_any_chunking():
    rec = frames(1)[0]
    data = b"9" * 3000 + rec + GENERATED
    for size in (len(data), 1000, 7):
        parser, rows, _ = feed_split(data, range(size, len(data), size))
        assert len(rows) == 2, size
        assert (parser.stats.resyncs, parser.stats.bytes_skipped) == (1, 3000), size
        assert parser.stats.malformed == 0 and parser.stats.checksum_errors == 0
    parser = csat3b.Parser()
    parser.feed(b"\xff" * 5000)
    assert len(parser._buf) <= csat3b.MAX_LINE_BYTES
    assert parser.feed(b"\n").n == 0 and parser.stats.resyncs == 1 and parser.stats.bytes_skipped == 5001


_TOKENS = [b"\r", b"\n", b",", b"0.1", b"-2", b"5", b"c3a6", b"x" * 700, b"9" * 900, b"\xff" * 500, REAL, REAL[:25]]
_BYTES = st.binary(max_size=3000) | st.lists(st.sampled_from(_TOKENS), max_size=30).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(_BYTES, st.lists(st.integers(0, 20_000), max_size=8))
def test_fuzz_random_bytes_never_raise(data, cuts):
    """Any bytes: no exception, bounded buffer, and (once the last line has ended) the same rows
    and counters however the bytes were chunked."""
    parser, rows, _ = feed_split(data, [c for c in cuts if c <= len(data)])
    assert len(parser._buf) <= csat3b.MAX_LINE_BYTES
    assert len(rows) <= data.count(b"\n")
    data += b"\n"
    whole, rows, _ = feed_split(data, [])
    chunked, rows2, _ = feed_split(data, [c % (len(data) + 1) for c in cuts])
    assert rows2 == rows and chunked.stats == whole.stats


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000),
       st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=60)), st.one_of(st.none(), MUTATION)),
                min_size=1, max_size=25),
       st.lists(st.integers(0, 5000), max_size=10))
def test_fuzz_frames_survive_garbage_and_mutations(seed, plan, cuts):
    """Garbage (ending in CR LF) between records and mutated records: nothing raises, and every
    unmutated record that starts a line is decoded, in order, whatever the chunking."""
    recs = frames(len(plan), seed=seed % 50 + 1)
    expected_rows = as_tuples(csat3b.Parser().feed(b"".join(recs)))
    stream, wanted = b"", []
    for i, (garbage, mutation) in enumerate(plan):
        if garbage is not None:
            stream += garbage + b"\r\n"
        frame = recs[i] if mutation is None else mutate(recs[i], mutation)
        if mutation is None and (not stream or stream.endswith(b"\n")):
            wanted.append(expected_rows[i])
        stream += frame
    whole, rows, ends = feed_split(stream, [])
    assert is_subsequence(wanted, rows)
    chunked, rows2, ends2 = feed_split(stream, [c % (len(stream) + 1) for c in cuts])
    assert rows2 == rows and ends2 == ends
    assert chunked.stats == whole.stats
