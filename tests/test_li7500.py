"""LI-7500 family: the LI-7550 text grammar (labelled and TAB records), diagnostics, emulated device."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import li7500, licor
from firmware_bridge.turbulence import TurbulenceModel, observe

# shared/reference/instruments.md section 4, a real labelled record.
LABELLED = (b"(Data (Ndx 1545)(DiagVal 250)(CO2Raw 1.5386712e-1)(CO2D 3.2183277e1)(H2ORaw 3.5775542e-2)"
            b"(H2OD 1.9687008e2)(Temp 2.4227569e1)(Pres 9.8640356e1)(Aux 0)(Cooler 1.5756724))\n")
CORE = ("sync_fault", "pll_fault", "detector_fault", "chopper_fault")


def obs_block(n, seed=3):
    return observe(TurbulenceModel(seed=seed).draw(n), 100.5)


def test_labelled_record_from_the_manual():
    parser = li7500.Parser()
    row = parser.feed(LABELLED).rows()[0]
    assert row["index"] == 1545 and row["diag"] == 250
    assert row["co2"] == pytest.approx(32.183277) and row["h2o"] == pytest.approx(196.87008)
    assert row["temperature"] == pytest.approx(24.227569) and row["pressure"] == pytest.approx(98.640356)
    assert row["signal_strength"] == pytest.approx(10 * 6.67)  # 250 = 0xFA: code 10
    assert row["co2_mf"] is None and row["h2o_mf"] is None  # not in this record
    flags = li7500.decode_flags(np.array([250]))
    assert not any(flags[name][0] for name in CORE)
    assert flags["signal_low"][0]  # 66.7 % < 70 %
    assert not li7500.valid(li7500.Parser().feed(LABELLED).columns)[0]  # screened on the low signal alone
    assert parser.stats.frames_ok == 1 and parser.stats.malformed == 0 and parser.stats.checksum_errors == 0


def test_decoded_types():
    batch = li7500.Parser().feed(LABELLED)
    assert batch.columns["index"].dtype == np.int64 and batch.columns["diag"].dtype == np.int64
    assert all(batch.columns[c].dtype == np.float64 for c in li7500.CHANNELS if c not in ("index", "diag"))
    assert set(batch.columns) == set(li7500.CHANNELS)


def test_manual_diagnostic_example_125():
    """125 = 0111 1101: chopper not OK, signal strength 13 x 6.67 = 87 % (A/RS/DS) / AGC 81 % (original)."""
    flags = li7500.decode_flags(np.array([125]))
    assert flags["chopper_fault"][0] and not flags["sync_fault"][0] and not flags["pll_fault"][0]
    assert not flags["detector_fault"][0] and not flags["signal_low"][0]
    assert li7500.signal_strength_pct(np.array([125]))[0] == pytest.approx(86.71)
    assert li7500.signal_strength_pct(np.array([125]), model="li7500")[0] == pytest.approx(81.25)
    assert li7500.decode_flags(np.array([125]), model="li7500")["signal_low"][0]  # AGC 81 % > 75 %: dirty
    assert li7500.valid({"diag": np.array([125, 0xFD, 0xFA])}).tolist() == [False, True, False]
    # original LI-7500: AGC 56 % (code 9) is a clean window, AGC 81 % (code 13) a dirty one
    assert li7500.valid({"diag": np.array([0xF9, 0xFD])}, model="li7500").tolist() == [True, False]


def test_each_subsystem_bit_names_its_own_fault():
    for name, bit in li7500.OK_BITS.items():
        flags = li7500.decode_flags(np.array([0xFF & ~(1 << bit)]))
        assert [n for n in CORE if flags[n][0]] == [name]
    assert not any(f[0] for f in li7500.decode_flags(np.array([0xFF])).values())


def test_original_li7500_reports_agc():
    parser = li7500.Parser(model="li7500")
    assert parser.feed(LABELLED).rows()[0]["signal_strength"] == pytest.approx(62.5)
    assert not li7500.decode_flags(np.array([250]), model="li7500")["signal_low"][0]  # AGC 62.5 %: clean
    with pytest.raises(ValueError, match="unknown LI-7500 model"):
        li7500.Parser(model="li7501")


def test_smartflux_style_record_with_mole_fractions_and_trailing_ch4_data():
    line = (b"(Data (Seconds 1709240296)(Nanoseconds 0)(Ndx 7)(DiagVal 255)(Date 2024-02-29)(Time 20:58:16:000)"
            b"(CO2D 19.25)(H2OD 148.0)(Temp 23.77)(Pres 100.009)(CO2MF 475.39)(H2OMF 3.653)(DewPt -6.93)"
            b"(CO2SS 100.631))(CH4Data (SECONDS 0)(CH4 0)(CH4D 0)(RSSI 0)(DIAG 0))(SonicData (U -1.5))\r\n")
    parser = li7500.Parser()
    row = parser.feed(line).rows()[0]
    assert (row["index"], row["co2"], row["co2_mf"], row["h2o_mf"]) == (7, 19.25, 475.39, 3.653)
    assert row["signal_strength"] == 100.631  # the reported value wins over the diag code
    assert parser.stats.malformed == 0 and parser.stats.resyncs == 0


def test_missing_labels_decode_to_nan_and_missing_diag_is_invalid():
    batch = li7500.Parser().feed(b"(Data (CO2D 15.5))\n")
    row = batch.rows()[0]
    assert row["index"] == li7500.MISSING and row["diag"] == li7500.MISSING
    assert row["h2o"] is None and row["signal_strength"] is None
    assert not li7500.valid(batch.columns)[0]
    assert all(f[0] for f in li7500.decode_flags(batch.columns["diag"]).values())


def test_tab_separated_output_in_configured_order():
    parser = li7500.Parser(columns=("Ndx", "CO2D", "H2OD", "Pres", "DiagVal", "Temp"))
    row = parser.feed(b"7\t15.1234\t354.123\t101.3\t249\t25.5\r\n").rows()[0]
    assert (row["index"], row["co2"], row["h2o"], row["pressure"], row["diag"], row["temperature"]) == \
        (7, 15.1234, 354.123, 101.3, 249, 25.5)


def test_outputs_command_grammar_examples():
    """The three commands of section 4, "Command grammar"."""
    bw = licor.parse_outputs(b"(Outputs(BW 10))")
    assert bw.bandwidth_hz == 10 and bw.freq_hz is None and bw.outputs == {}
    cmd = licor.parse_outputs(b"(Outputs(RS232(Freq 10)(Pres TRUE))(BW 5))")
    assert (cmd.freq_hz, cmd.bandwidth_hz, cmd.outputs) == (10, 5, {"Pres": True})
    cmd = licor.parse_outputs(b'(Outputs(RS232(Freq 1)(EOL "0D0A")(Ndx TRUE)(DiagRec FALSE)(DiagVal TRUE)'
                              b"(Labels FALSE)))")
    assert (cmd.eol, cmd.labels, cmd.outputs) == (b"\r\n", False, {"Ndx": True, "DiagRec": False, "DiagVal": True})
    assert licor.parse_outputs(b"(Coef ?)") is None


def test_command_start_matches_the_parser_default_columns():
    cmd = licor.parse_outputs(li7500.command_start(20))
    assert cmd.freq_hz == 20 and cmd.labels is True and cmd.eol == b"\r\n"
    assert tuple(label for label, on in cmd.outputs.items() if on) == li7500.DEFAULT_COLUMNS
    assert li7500.tab_columns(li7500.command_start(20)) == li7500.Parser().columns


def test_outputs_command_switches_device_output_and_default_parser_decodes_it():
    obs = obs_block(6)
    dev = li7500.Device()
    start = li7500.command_start(20)
    assert dev.receive(start[:17]) == b"" and dev.receive(start[17:]) == b""  # split command
    assert dev.frames(obs, 0)[0].startswith(b"(Data (Ndx 0)(DiagVal 255)(CO2D ")
    dev.receive(li7500.command_outputs(20, labels=False))
    frames = dev.frames(obs, 6)
    assert all(f.count(b"\t") == len(li7500.DEFAULT_COLUMNS) - 1 and f.endswith(b"\r\n") for f in frames)
    batch = li7500.Parser().feed(b"".join(frames))
    assert batch.columns["index"].tolist() == list(range(6, 12))
    assert np.allclose(batch.columns["co2"], obs["co2"], rtol=1e-7)
    assert np.allclose(batch.columns["pressure"], 100.5)

    # enabling the mole fractions: labelled records carry them, the TAB layout grows accordingly
    more = b"(Outputs(RS232(Labels TRUE)(CO2MF TRUE)(H2OMF TRUE)(Temp FALSE)))\n"
    dev.receive(more)
    row = li7500.Parser().feed(dev.frames(obs, 12)[0]).rows()[0]
    assert row["co2_mf"] == pytest.approx(410, rel=0.05) and row["h2o_mf"] == pytest.approx(28, rel=0.1)
    assert row["temperature"] is None
    layout = li7500.tab_columns(more)
    assert layout == ("Ndx", "DiagVal", "CO2D", "H2OD", "Pres", "CO2MF", "H2OMF")
    dev.receive(b"(Outputs(RS232(Labels FALSE)))\n")
    tab = li7500.Parser(columns=layout).feed(b"".join(dev.frames(obs, 13)))
    assert tab.n == 6 and np.isfinite(tab.columns["co2_mf"]).all() and np.isnan(tab.columns["temperature"]).all()


def test_device_ignores_unknown_commands_and_freq_zero_silences_it():
    dev = li7500.Device()
    before = dev.frames(obs_block(1), 0)
    assert dev.receive(b"(Foo (Bar 1))\ngarbage\r\n(Outputs(RS232(Bogus TRUE)))\n") == b""
    assert dev.frames(obs_block(1), 0) == before
    dev.receive(b"(Outputs(RS232(Freq 0)))\n")
    assert not dev.streaming
    dev.receive(b"(Outputs(RS232(Freq 10)))\n")
    assert dev.streaming and dev.rate_hz == 10


@pytest.mark.parametrize("condition", ["rain", "obstruction", "low_signal"])
def test_conditions_drop_the_signal_but_keep_subsystems_ok(condition):
    obs = obs_block(4)
    for model, low in (("li7500a", True), ("li7500", True)):
        dev = li7500.Device(model=model)
        dev.condition = condition
        batch = li7500.Parser(model=model).feed(b"".join(dev.frames(obs, 0)))
        flags = li7500.decode_flags(batch.columns["diag"], model=model)
        assert flags["signal_low"].all() == low and not any(flags[n].any() for n in CORE)
        assert not li7500.valid(batch.columns, model=model).any()
        dev.condition = None
        clean = li7500.Parser(model=model).feed(b"".join(dev.frames(obs, 4)))
        assert li7500.valid(clean.columns, model=model).all()
    dev = li7500.Device()
    dev.condition = condition
    ss = li7500.Parser().feed(b"".join(dev.frames(obs, 0))).columns["signal_strength"]
    assert (ss <= 60.1).all()


def test_gas_diag_observation_overrides_the_diagnostic_value():
    obs = obs_block(3)
    obs["gas_diag"] = np.array([0xFF, 0x7F, 0xEF])
    batch = li7500.Parser().feed(b"".join(li7500.Device().frames(obs, 0)))
    assert batch.columns["diag"].tolist() == [0xFF, 0x7F, 0xEF]
    assert li7500.valid(batch.columns).tolist() == [True, False, False]


def test_screening_rejects_failed_subsystems_and_non_finite_gas():
    cols = {"diag": np.array([0xFF, 0x7F, 0xEF, 0xFB, 0xF0, 0xFF]), "co2": np.array([1.0, 1, 1, 1, 1, np.nan]),
            "h2o": np.ones(6)}
    assert li7500.valid(cols).tolist() == [True, False, False, True, False, False]


def test_encode_observation_still_serves_the_emulator():
    obs = obs_block(4)
    for labels in (True, False):
        batch = li7500.Parser().feed(li7500.encode_observation(obs, 100, labels=labels))
        assert batch.columns["index"].tolist() == [100, 101, 102, 103]
        assert np.allclose(batch.columns["h2o"], obs["h2o"], rtol=1e-7)


# -- exact accounting -------------------------------------------------------------------------
def damaged_stream(dev, n=30):
    """Records 0..n-1 with: a garbage line, record 5 corrupted, 10-11 dropped, 20 truncated and run
    into 21, three bytes of noise in front of 25, and an empty line and a reply (ignored)."""
    obs = obs_block(n)
    frames = dev.frames(obs, 0)
    out = []
    for i, f in enumerate(frames):
        if i == 5:
            out.append(b"\x00\xffnoise\n")
            f = dev.corrupt(f)
        elif i in (10, 11):
            continue
        elif i == 20:
            f = f[:len(f) // 2]
        elif i == 25:
            f = b"xyz" + f
        elif i == 27:
            out.append(b"\r\n(Ack (Received TRUE))\n")
        out.append(f)
    return obs, b"".join(out)


@pytest.mark.parametrize("labels", [True, False])
def test_damage_is_counted_exactly(labels):
    dev = li7500.Device()
    dev.labels = labels
    obs, stream = damaged_stream(dev)
    parser = li7500.Parser()
    batch = parser.feed(stream)
    s = parser.stats
    if labels:  # the truncated record is malformed, the one after it is found on the same line
        lost = {5, 10, 11, 20}
        assert (s.malformed, s.resyncs, s.bytes_skipped) == (3, 1, 3)
        assert (s.counter_gaps, s.samples_missed) == (3, 4)
    else:  # a TAB line run into the next one, and noise in front of one, lose the whole line
        lost = {5, 10, 11, 20, 21, 25}
        assert (s.malformed, s.resyncs, s.bytes_skipped) == (4, 0, 0)
        assert (s.counter_gaps, s.samples_missed) == (4, 6)
    kept = [i for i in range(30) if i not in lost]
    assert batch.columns["index"].tolist() == kept and s.frames_ok == len(kept)
    assert np.allclose(batch.columns["co2"], obs["co2"][kept], rtol=1e-7)
    assert s.checksum_errors == 0 and s.nan_records == 0


def test_corrupted_records_are_malformed_in_both_forms():
    dev = li7500.Device()
    for labels in (True, False):
        dev.labels = labels
        frames = dev.frames(obs_block(8), 0)
        parser = li7500.Parser()
        batch = parser.feed(b"".join(dev.corrupt(f) if i % 3 == 1 else f for i, f in enumerate(frames)))
        assert parser.stats.malformed == 3 and batch.columns["index"].tolist() == [0, 2, 3, 5, 6]
        assert (parser.stats.counter_gaps, parser.stats.samples_missed) == (2, 2)  # the last one: no gap yet


def test_overlong_line_is_dropped_and_the_buffer_stays_bounded():
    parser = li7500.Parser()
    parser.feed(b"A" * 5000)
    assert len(parser._buf) == 0 and parser.stats.resyncs == 1 and parser.stats.bytes_skipped == 5000
    assert parser.feed(b"\n" + LABELLED).n == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=40), st.booleans())
def test_round_trip_over_random_chunk_splits(cuts, labels):
    dev = li7500.Device()
    dev.labels = labels
    _, stream = damaged_stream(dev)
    whole = li7500.Parser()
    expected = whole.feed(stream)
    parser = li7500.Parser()
    parts, pos = [], 0
    for c in cuts:
        parts.append(parser.feed(stream[pos:pos + c]))
        pos += c
    parts.append(parser.feed(stream[pos:]))
    got = np.concatenate([p.columns["co2"] for p in parts])
    assert np.array_equal(got, expected.columns["co2"])
    assert parser.stats == whole.stats
    starts = np.cumsum([0, *cuts]).tolist()
    ends = np.concatenate([p.end_offsets + start for p, start in zip(parts, starts, strict=True)])
    assert ends.tolist() == expected.end_offsets.tolist()


# -- fuzzing ----------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(["li7500", "li7500a"]))
def test_fuzz_random_bytes_never_raise(data, model):
    parser = li7500.Parser(model=model)
    batch = parser.feed(data)
    parser.feed(data[::-1])
    assert len(parser._buf) <= li7500.MAX_LINE_BYTES
    assert batch.columns["diag"].dtype == np.int64


def mutate(record: bytes, draw) -> bytes:
    """One random edit inside a record's body (its final LF is kept)."""
    body, end = record[:-1], record[-1:]
    i = draw(st.integers(min_value=0, max_value=len(body) - 1))
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = bytes([draw(st.integers(min_value=0, max_value=255))])
    if kind == "replace":
        body = body[:i] + byte + body[i + 1:]
    elif kind == "insert":
        body = body[:i] + byte + body[i:]
    else:
        body = body[:i] + body[i + 1:]
    return body + end


def interleaved(data, frames):
    """Records with random garbage lines in between and random edits; the indices left intact."""
    parts, intact = [], []
    for i, frame in enumerate(frames):
        garbage = data.draw(st.binary(max_size=60))
        if garbage:
            parts.append(garbage + b"\n")
        if data.draw(st.booleans()):
            frame = mutate(frame, data.draw)
        else:
            intact.append(i)
        parts.append(frame)
    return b"".join(parts), intact


@settings(max_examples=200, deadline=None)
@given(st.data(), st.booleans())
def test_fuzz_intact_records_survive_garbage_and_mutations(data, labels):
    dev = li7500.Device()
    dev.labels = labels
    obs = obs_block(8, seed=data.draw(st.integers(0, 3)))
    stream, intact = interleaved(data, dev.frames(obs, 0))
    parser = li7500.Parser()
    chunk = data.draw(st.integers(min_value=1, max_value=len(stream) + 1))
    batches = [parser.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk)]
    index = np.concatenate([b.columns["index"] for b in batches])
    co2 = np.concatenate([b.columns["co2"] for b in batches])
    decoded = set(zip(index.tolist(), co2.tolist(), strict=True))
    for i in intact:
        assert (i, float(licor.licor_number(obs["co2"][i]))) in decoded
