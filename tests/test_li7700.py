"""LI-7700: header-driven tab-delimited parsing, DIAG bits, RSSI screening, emulated device, methane truth."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import li7700
from firmware_bridge.turbulence import (
    METHANE,
    R_J_MOL_K,
    STATE,
    TurbulenceModel,
    TurbulenceSpec,
    observe,
    true_fluxes,
)


def obs_block(n, seed=6):
    return observe(TurbulenceModel(seed=seed).draw(n), 100.5)


def test_family_shape():
    assert (li7700.NAME, li7700.ROLE, li7700.TRANSPORT, li7700.DEFAULT_TCP_PORT) == ("li7700", "gas", "tcp", 7700)
    assert li7700.Device.family == "li7700" and li7700.command_start(20) == b""
    assert set(li7700.UNITS) == set(li7700.CHANNELS)


def test_diag_bit_names():
    flags = li7700.decode_flags(np.array([32768, 512, 1, 0]))
    assert len(flags) == 16
    assert [n for n, f in flags.items() if f[0]] == ["not_ready"]
    assert [n for n, f in flags.items() if f[1]] == ["motor_spinning"]
    assert [n for n, f in flags.items() if f[2]] == ["box_connected"]
    assert not any(f[3] for f in flags.values())
    values = {"not_ready": 32768, "no_signal": 16384, "ref_unlocked": 8192, "bad_temp": 4096,
              "laser_temp_unregulated": 2048, "block_temp_unregulated": 1024, "motor_spinning": 512,
              "pump_on": 256, "top_heater_on": 128, "bottom_heater_on": 64, "calibrating": 32, "motor_failure": 16}
    for name, value in values.items():
        assert li7700.decode_flags(np.array([value]))[name][0]


def test_valid_blanks_faults_cleaning_and_low_rssi_but_not_states():
    diag = np.array([0, 128 | 64 | 1, 32, 512, 256, 16384, 8192, 4096, 2048, 32768, 1024, 16, 0, 0, -1])
    rssi = np.array([60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 19.9, 20.0, 60])
    ok = li7700.valid({"diag": diag, "rssi": rssi, "ch4": np.full(len(diag), 0.08)})
    assert ok.tolist() == [True, True, False, False, False, False, False, False, False, False, True, True,
                           False, True, False]
    assert not li7700.valid({"diag": np.array([0]), "rssi": np.array([60.0]), "ch4": np.array([np.nan])})[0]


def test_header_driven_parsing_with_reordered_columns():
    obs = obs_block(5)
    default = li7700.Device(seed=1)
    order = ("RSSI", "CH4", "DIAG", "TEMP", "EXTRA", "NANOSECONDS", "PRESSURE", "SECONDS", "CH4D")
    shuffled = li7700.Device(seed=1, header=order)
    a = li7700.Parser().feed(b"".join(default.frames(obs, 0)))
    parser = li7700.Parser()
    b = parser.feed(shuffled.banner() + b"".join(shuffled.frames(obs, 0)))
    assert parser.header == order and parser.stats.malformed == 0
    for name in ("ch4", "ch4_mf", "diag", "temperature", "pressure", "rssi", "time"):
        assert np.array_equal(a.columns[name], b.columns[name]), name
    assert np.isnan(b.columns["msec"]).all() and not np.isnan(a.columns["msec"]).any()
    assert np.allclose(b.columns["ch4"], obs["ch4"], rtol=1e-6)
    assert np.array_equal(b.columns["signal_strength"], b.columns["rssi"])
    assert b.columns["diag"].dtype == np.int64 and b.columns["ch4"].dtype == np.float64


def test_hand_written_lines_and_header_changes():
    parser = li7700.Parser()
    text = (b"DATA\t100\t1700000000\t500000000\t0\t0.0812\t1.95\t15.2\t97.9\t62\t0\r\n"
            b"<li7700><ack>true</ack></li7700>\n"
            b"DATAH\tDIAG\tCH4D\tRSSI\n"
            b"DATA\t8192\t0.09\t8.5\n"
            b"DATA\t1\t2\n"
            b"STATUS\tsomething\n")
    rows = parser.feed(text).rows()
    assert rows[0]["time"] == pytest.approx(1700000000.5) and rows[0]["msec"] == 100
    assert (rows[0]["ch4"], rows[0]["ch4_mf"], rows[0]["temperature"], rows[0]["pressure"], rows[0]["rssi"]) == \
        (0.0812, 1.95, 15.2, 97.9, 62)
    assert (rows[1]["diag"], rows[1]["ch4"], rows[1]["rssi"], rows[1]["pressure"]) == (8192, 0.09, 8.5, None)
    assert li7700.decode_flags(np.array([rows[1]["diag"]]))["ref_unlocked"][0]
    assert parser.stats.frames_ok == 2 and parser.stats.malformed == 2  # short DATA line, unknown line type


def test_bad_headers_are_malformed_and_keep_the_previous_one():
    parser = li7700.Parser()
    parser.feed(b"DATAH\t0\t1700000000\n")
    parser.feed(b"DATAH\n")
    assert parser.header == li7700.DEFAULT_HEADER and parser.stats.malformed == 2


@pytest.mark.parametrize(("condition", "rssi", "no_signal"), [("rain", 5, False), ("low_signal", 12, False),
                                                              ("obstruction", 0, True)])
def test_conditions_drop_rssi(condition, rssi, no_signal):
    dev = li7700.Device(seed=2)
    clean = li7700.Parser().feed(b"".join(dev.frames(obs_block(4), 0)))
    assert li7700.valid(clean.columns).all() and (clean.columns["rssi"] > 55).all()
    dev.condition = condition
    batch = li7700.Parser().feed(b"".join(dev.frames(obs_block(4), 4)))
    assert (batch.columns["rssi"] == rssi).all() and not li7700.valid(batch.columns).any()
    assert li7700.decode_flags(batch.columns["diag"])["no_signal"].all() == no_signal


def test_ch4_diag_override_and_background_without_ch4():
    obs = obs_block(3)
    obs["ch4_diag"] = np.array([0, 32, 512])
    batch = li7700.Parser().feed(b"".join(li7700.Device().frames(obs, 0)))
    assert batch.columns["diag"].tolist() == [0, 32, 512]
    del obs["ch4"]
    batch = li7700.Parser().feed(b"".join(li7700.Device().frames(obs, 0)))
    n = 100.5e3 / (R_J_MOL_K * (obs["temperature"] + 273.15))
    assert np.allclose(batch.columns["ch4_mf"], 1.95, rtol=1e-6)
    assert np.allclose(batch.columns["ch4"], 1.95e-3 * n, rtol=1e-6)


def test_damage_and_time_gaps_counted_exactly():
    dev = li7700.Device(rate_hz=10)
    frames = dev.frames(obs_block(20), 0)
    stream = b"".join([dev.banner(), *frames[:4], dev.corrupt(frames[4]), *frames[5:9], *frames[12:15],
                       frames[15][:20], *frames[16:]])
    parser = li7700.Parser(rate_hz=10)
    batch = parser.feed(stream)
    kept = [0, 1, 2, 3, 5, 6, 7, 8, 12, 13, 14, 17, 18, 19]  # 15 truncated and run into 16
    assert np.allclose(batch.columns["time"], dev.EPOCH_S + np.array(kept) / 10)
    s = parser.stats
    assert (s.frames_ok, s.malformed, s.counter_gaps, s.samples_missed, s.checksum_errors) == (14, 2, 3, 6, 0)
    # without the rate, the period is learnt from the time stamps (here after 8 steps: 0-3, 5-8, 12)
    learnt = li7700.Parser()
    learnt.feed(stream)
    assert (learnt.stats.frames_ok, learnt.stats.counter_gaps, learnt.stats.samples_missed) == (14, 3, 6)
    late = li7700.Parser()
    for f in [*frames[:3], *frames[5:]]:  # fed one by one, a gap before the period is known is not counted
        late.feed(f)
    assert (late.stats.frames_ok, late.stats.counter_gaps) == (18, 0)


def test_encode_observation_prepends_the_header_once():
    obs = obs_block(3)
    first = li7700.encode_observation(obs, 0)
    assert first.startswith(b"DATAH\t") and not li7700.encode_observation(obs, 3).startswith(b"DATAH")
    assert li7700.Parser().feed(first).n == 3


# -- methane in the synthetic turbulence --------------------------------------------------------
def test_methane_does_not_change_the_six_state_draws():
    spec = TurbulenceSpec()
    state = TurbulenceModel(spec, seed=9).draw(1000)
    rng = np.random.default_rng(9)
    rng.standard_normal(len(STATE))  # the initial AR(1) state
    z = rng.standard_normal((1000, len(STATE)))
    expected = z @ np.linalg.cholesky(spec.covariance()).T + spec.mean()
    for i, name in enumerate(STATE):
        assert np.array_equal(state[name], expected[:, i]), name
    assert METHANE in state


@pytest.mark.parametrize("ar1", [0.0, 0.7])
def test_methane_flux_matches_the_documented_truth(ar1):
    spec = TurbulenceSpec(ar1=ar1)
    state = TurbulenceModel(spec, seed=10).draw(200_000)
    obs = observe(state, spec.pressure_kpa)
    n_dry = spec.pressure_kpa * 1e3 / (R_J_MOL_K * state["t_k"]) / (1 + state["chi_v"] * 1e-3)
    assert np.allclose(obs["ch4"], state[METHANE] * n_dry * 1e-3)
    sample = n_dry.mean() * np.cov(state["w"], state[METHANE])[0, 1] * 1e3  # nmol m-2 s-1
    truth = true_fluxes(spec)["FCH4"]
    assert 20 < truth < 80
    assert sample == pytest.approx(truth, rel=0.05 if ar1 else 0.02)
    assert state[METHANE].mean() == pytest.approx(spec.ch4_mean_umol_mol, abs=1e-3)
    assert state[METHANE].std() == pytest.approx(spec.ch4_sigma_umol_mol, rel=0.03)


# -- fuzzing ----------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data):
    parser = li7700.Parser(rate_hz=20)
    parser.feed(data)
    parser.feed(b"DATAH\t" + data + b"\nDATA\t" + data + b"\n")
    assert len(parser._buf) <= li7700.MAX_LINE_BYTES


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_intact_records_survive_garbage_and_mutations(data):
    dev = li7700.Device(seed=7, header=("CH4D", "DIAG", "SECONDS", "NANOSECONDS", "RSSI", "TEMP", "PRESSURE"))
    frames = dev.frames(obs_block(6), 0)
    clean = li7700.Parser(header=dev.header).feed(b"".join(frames)).columns
    parts, intact = [dev.banner()], []
    for i, frame in enumerate(frames):
        parts.append(data.draw(st.binary(max_size=60)) + b"\n")
        if data.draw(st.booleans()):
            at = data.draw(st.integers(0, len(frame) - 2))
            frame = frame[:at] + data.draw(st.binary(min_size=0, max_size=3)) + frame[at + 1:]
        else:
            intact.append(i)
        parts.append(frame)
    stream = b"".join(parts)
    parser = li7700.Parser(rate_hz=20)
    chunk = data.draw(st.integers(1, len(stream)))
    batches = [parser.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk)]
    decoded = set(zip(np.concatenate([b.columns["time"] for b in batches]).tolist(),
                      np.concatenate([b.columns["ch4"] for b in batches]).tolist(), strict=True))
    for i in intact:
        assert (clean["time"][i], clean["ch4"][i]) in decoded
