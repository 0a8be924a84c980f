"""LI-7200/RS: the shared LI-7550 grammar with the enclosed-path extras and 16-bit diagnostics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import li7200, licor
from firmware_bridge.turbulence import TurbulenceModel, observe

FAULTS = ("sync_fault", "pll_fault", "detector_fault", "chopper_fault", "dpressure_fault", "aux_ref_fault",
          "t_inlet_fault", "t_outlet_fault", "head_missing")


def obs_block(n, seed=4):
    return observe(TurbulenceModel(seed=seed).draw(n), 99.0)


def test_family_shape():
    assert (li7200.NAME, li7200.ROLE, li7200.TRANSPORT, li7200.DEFAULT_BAUD) == ("li7200", "gas", "serial", 115200)
    assert li7200.BAUDS == (9600, 19200, 38400, 57600, 115200)
    assert li7200.Device.family == "li7200" and li7200.Parser.family == "li7200"
    assert set(li7200.UNITS) == set(li7200.CHANNELS)


def test_8191_is_all_ok_at_full_signal():
    flags = li7200.decode_flags(np.array([8191]))
    assert set(flags) == {*FAULTS, "signal_low"}
    assert not any(f[0] for f in flags.values())
    assert li7200.signal_strength_pct(np.array([8191]))[0] == pytest.approx(15 * 6.67)
    assert li7200.valid({"diag": np.array([8191])})[0]


def test_each_bit_names_its_own_fault():
    for name, bit in li7200.OK_BITS.items():
        diag = np.array([8191 & ~(1 << bit)])
        flags = li7200.decode_flags(diag)
        assert [n for n in FAULTS if flags[n][0]] == [name]
        assert not li7200.valid({"diag": diag})[0]
    # bits 13-15 are unused: setting them changes nothing
    assert li7200.valid({"diag": np.array([8191 | 0xE000])})[0]
    # signal strength: code 11 (73 %) passes, code 10 (67 %) does not
    assert li7200.valid({"diag": np.array([8187, 8186])}).tolist() == [True, False]


def test_chopper_fault_example():
    """8061 = 1 1111 0111 1101: chopper not OK, signal strength 13 x 6.67 = 87 %, everything else OK."""
    flags = li7200.decode_flags(np.array([8061]))
    assert [n for n in FAULTS if flags[n][0]] == ["chopper_fault"] and not flags["signal_low"][0]
    assert li7200.signal_strength_pct(np.array([8061]))[0] == pytest.approx(86.71)


def test_labelled_record_with_the_enclosed_path_extras():
    line = (b"(Data (Ndx 10)(DiagVal 8189)(CO2D 1.6e1)(H2OD 5.1e2)(Temp 2.15e1)(Pres 9.82e1)(CO2MF 399.0)"
            b"(CO2MFd 412.5)(H2OMFd 11.2)(AvgSS 93.5)(MeasFlowRate 14.8)(VolFlowRate 15.1)(DPres -1.2)"
            b"(TempIn 21.4)(TempOut 21.8)(FlowDrive 45))\n")
    parser = li7200.Parser()
    row = parser.feed(line).rows()[0]
    assert (row["index"], row["diag"], row["co2"], row["h2o"]) == (10, 8189, 16.0, 510.0)
    assert row["co2_mf"] == 412.5  # the dry mole fraction wins over CO2MF
    assert row["flow"] == 15.1  # VolFlowRate wins over MeasFlowRate, whatever their order
    assert (row["t_in"], row["t_out"], row["dpressure"], row["signal_strength"]) == (21.4, 21.8, -1.2, 93.5)
    assert parser.stats.malformed == 0


def test_tab_records_in_the_default_layout():
    parser = li7200.Parser()
    line = b"\t".join([b"5", b"8191", b"16.1", b"600.5", b"21.0", b"98.0", b"20.9", b"21.1", b"-1.1", b"14.9"])
    row = parser.feed(line + b"\r\n").rows()[0]
    assert (row["index"], row["t_in"], row["t_out"], row["dpressure"], row["flow"]) == (5, 20.9, 21.1, -1.1, 14.9)
    assert row["co2_mf"] is None and row["signal_strength"] == pytest.approx(100.05)
    assert parser.feed(b"\t".join([b"5", b"8191", b"16.1"]) + b"\n").n == 0 and parser.stats.malformed == 1


def test_command_start_layout_matches_parser_and_device():
    cmd = licor.parse_outputs(li7200.command_start(10))
    assert cmd.freq_hz == 10 and tuple(k for k, on in cmd.outputs.items() if on) == li7200.DEFAULT_COLUMNS
    dev = li7200.Device(seed=1)
    dev.receive(li7200.command_start(10))
    dev.receive(li7200.command_outputs(10, labels=False))
    obs = obs_block(5)
    frames = dev.frames(obs, 0)
    assert all(f.count(b"\t") == len(li7200.DEFAULT_COLUMNS) - 1 for f in frames)
    batch = li7200.Parser().feed(b"".join(frames))
    assert batch.columns["index"].tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(batch.columns["pressure"], 99.0) and np.allclose(batch.columns["dpressure"], li7200.DPRES_KPA)
    assert np.allclose(batch.columns["co2"], obs["co2"], rtol=1e-7)
    assert np.allclose(batch.columns["flow"], li7200.FLOW_LPM, atol=0.3)
    assert np.allclose(batch.columns["t_out"] - batch.columns["t_in"], 2 * li7200.T_SPLIT_K)
    assert li7200.valid(batch.columns).all()


def test_dry_mole_fractions():
    obs = obs_block(3)
    dev = li7200.Device()
    dev.receive(b"(Outputs(RS232(CO2MFd TRUE)(H2OMFd TRUE)(AvgSS TRUE)))\n")
    row = li7200.Parser().feed(dev.frames(obs, 0)[0]).rows()[0]
    n = 99.0e3 / (8.314462618 * (obs["temperature"][0] + 273.15)) - obs["h2o"][0] * 1e-3  # dry air, mol m-3
    assert row["co2_mf"] == pytest.approx(obs["co2"][0] / n * 1e3, rel=1e-6)
    assert row["h2o_mf"] == pytest.approx(obs["h2o"][0] / n, rel=1e-6)
    assert row["signal_strength"] == pytest.approx(100.05)


@pytest.mark.parametrize("condition", ["rain", "obstruction", "low_signal"])
def test_conditions(condition):
    dev = li7200.Device(seed=2)
    dev.condition = condition
    batch = li7200.Parser().feed(b"".join(dev.frames(obs_block(4), 0)))
    flags = li7200.decode_flags(batch.columns["diag"])
    assert flags["signal_low"].all() and not any(flags[n].any() for n in FAULTS)
    assert not li7200.valid(batch.columns).any()
    if condition == "obstruction":
        assert (batch.columns["flow"] < 2).all() and (batch.columns["dpressure"] < -5).all()
    else:
        assert (batch.columns["flow"] > 10).all()


def test_damage_counted_exactly():
    dev = li7200.Device(seed=3)
    obs = obs_block(12)
    frames = dev.frames(obs, 0)
    stream = b"".join([*frames[:3], dev.corrupt(frames[3]), b"junk\tline\n", *frames[4:6], *frames[8:]])
    parser = li7200.Parser()
    batch = parser.feed(stream)
    assert batch.columns["index"].tolist() == [0, 1, 2, 4, 5, 8, 9, 10, 11]
    s = parser.stats
    assert (s.frames_ok, s.malformed, s.counter_gaps, s.samples_missed, s.resyncs) == (9, 2, 2, 3, 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data):
    parser = li7200.Parser()
    parser.feed(data)
    parser.feed(data + b"\n")
    assert len(parser._buf) <= li7200.MAX_LINE_BYTES


@settings(max_examples=200, deadline=None)
@given(st.data(), st.booleans())
def test_fuzz_intact_records_survive_garbage_and_mutations(data, labels):
    dev = li7200.Device(seed=5)
    dev.labels = labels
    obs = obs_block(6)
    frames = dev.frames(obs, 0)
    clean = li7200.Parser().feed(b"".join(frames)).columns["h2o"]
    parts, intact = [], []
    for i, frame in enumerate(frames):
        garbage = data.draw(st.binary(max_size=60))
        parts.append(garbage + b"\n")
        if data.draw(st.booleans()):
            at = data.draw(st.integers(0, len(frame) - 2))
            frame = frame[:at] + data.draw(st.binary(min_size=1, max_size=3)) + frame[at + 1:]
        else:
            intact.append(i)
        parts.append(frame)
    stream = b"".join(parts)
    parser = li7200.Parser()
    chunk = data.draw(st.integers(1, len(stream)))
    batches = [parser.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk)]
    decoded = set(zip(np.concatenate([b.columns["index"] for b in batches]).tolist(),
                      np.concatenate([b.columns["h2o"] for b in batches]).tolist(), strict=True))
    for i in intact:
        assert (i, clean[i]) in decoded
