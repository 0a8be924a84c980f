"""Stream buffers and alignment onto the sonic's grid."""

import numpy as np

from station.acquisition.align import assign_slots, place_on_grid, regular_grid
from station.acquisition.readers import SampleBlock, StreamBuffer


def test_take_period_splits_by_receive_time_and_drops_leftovers():
    buf = StreamBuffer()
    buf.append(SampleBlock(np.array([8.0, 9.5, 10.2]), {"x": np.array([1.0, 2.0, 3.0])}))
    buf.append(SampleBlock(np.array([19.9, 20.0, 20.1]), {"x": np.array([4.0, 5.0, 6.0])}))
    block = buf.take_period(9.0, 20.0)
    assert block.t.tolist() == [9.5, 10.2, 19.9] and block.columns["x"].tolist() == [2.0, 3.0, 4.0]
    assert buf.take_period(20.0, 30.0).columns["x"].tolist() == [5.0, 6.0]


def test_grid_alignment_fills_dropouts_with_nan_and_pairs_streams():
    rate = 20.0
    t_sonic = 100.0 + 0.013 + np.arange(200) / rate + np.random.default_rng(0).normal(0, 0.003, 200)
    t_sonic = np.delete(t_sonic, [50, 51, 52])  # three samples lost
    grid = regular_grid(t_sonic, 100.0, 110.0, rate)
    assert len(grid) == 200 and abs((grid[0] - 100.0) - 0.013) < 0.004
    sonic = place_on_grid(grid, t_sonic, {"w": np.arange(197.0)}, 0.5 / rate)
    assert np.isnan(sonic["w"][50:53]).all() and np.isfinite(sonic["w"]).sum() == 197
    # the analyser's records arrive 2 ms after the sonic's: each pairs with its own tick
    irga = place_on_grid(grid, t_sonic + 0.002, {"co2": np.arange(197.0)}, 0.5 / rate)
    ok = np.isfinite(sonic["w"])
    assert np.array_equal(irga["co2"][ok], sonic["w"][ok])


def test_two_samples_claiming_one_slot_are_repaired_not_dropped():
    """The earlier of two frames in one slot was stamped late: it moves back into the free slot."""
    grid = np.array([0.0, 0.05, 0.10])
    out = place_on_grid(grid, np.array([0.049, 0.051, 0.2]), {"x": np.array([1.0, 2.0, 3.0])}, 0.025)
    assert np.array_equal(out["x"], [1.0, 2.0, np.nan], equal_nan=True)
    # no free slot before: the later frame moves on into the free slot after it
    out = place_on_grid(grid, np.array([0.0, 0.049, 0.051]), {"x": np.array([1.0, 2.0, 3.0])}, 0.025)
    assert np.array_equal(out["x"], [1.0, 2.0, 3.0])
    # nowhere to go: the later one is dropped
    out = place_on_grid(grid, np.array([0.0, 0.049, 0.051, 0.1]), {"x": np.array([1.0, 2.0, 3.0, 4.0])}, 0.025)
    assert np.array_equal(out["x"], [1.0, 2.0, 4.0])


RATE = 20.0


def _stamps(n: int, late: dict[int, float], seed: int = 1) -> np.ndarray:
    """Receive times of ``n`` frames at 20 Hz with 2 ms jitter, frames ``late`` delayed by the station."""
    t = 1000.0 + 0.004 + np.arange(n) / RATE + np.random.default_rng(seed).normal(0, 0.002, n)
    for i, d in late.items():
        t[i] += d
    return t


def test_frames_stamped_late_by_the_station_keep_their_slots_without_a_counter():
    """The replay finding: frames stamped 25-50 ms late landed one slot late and the frame of that
    slot was lost. Repaired: every frame in its own slot, in order."""
    late = {100: 0.030, 101: 0.045, 500: 0.040, 900: 0.026, 1100: 0.049}
    t = _stamps(1200, late)
    grid = regular_grid(t, 1000.0, 1060.0, RATE)
    out = place_on_grid(grid, t, {"k": np.arange(1200.0)}, 0.5 / RATE)
    assert np.array_equal(out["k"], np.arange(1200.0))


def test_counter_places_records_even_when_stamped_far_too_late():
    """CSAT3 counter (0..63): a burst of frames stamped 150-300 ms late (the station busy closing a
    period), three records lost and a gap longer than the counter's wrap: each record in its slot."""
    n = 1200
    t = _stamps(n, {i: 0.15 + 0.15 * (i - 300) / 6 for i in range(300, 307)})
    k = np.arange(n)
    keep = np.ones(n, bool)
    keep[[50, 51, 700]] = False
    keep[800:900] = False  # 100 records lost: the counter wraps past 64
    t, k = t[keep], k[keep]
    grid = regular_grid(t, 1000.0, 1060.0, RATE)
    out = place_on_grid(grid, t, {"k": k.astype(float)}, 0.5 / RATE, counter=k % 64, modulus=64)
    expected = np.where(keep, np.arange(n, dtype=float), np.nan)
    assert np.array_equal(out["k"], expected, equal_nan=True)
    # by time alone the burst collides and shifts
    by_time = place_on_grid(grid, t, {"k": k.astype(float)}, 0.5 / RATE)
    assert not np.array_equal(by_time["k"], expected, equal_nan=True)


def test_licor_index_places_records():
    n = 600
    t = _stamps(n, {200: 0.09, 201: 0.07})
    ndx = 15000 + np.arange(n)
    grid = regular_grid(t, 1000.0, 1030.0, RATE)
    out = place_on_grid(grid, t, {"k": np.arange(n, dtype=float)}, 0.5 / RATE, counter=ndx, modulus=None)
    assert np.array_equal(out["k"], np.arange(n, dtype=float))


def test_samples_beyond_the_period_are_found_for_the_next_one():
    """A frame of the next period stamped before its boundary, or the last frame of this period
    stamped after it: their slots say which period they belong to."""
    t = _stamps(40, {39: 0.04})
    grid = regular_grid(t, 1000.0, 1001.5, RATE)  # 30 slots
    idx, ok = assign_slots(grid, t, 0.5 / RATE, counter=np.arange(40) % 64, modulus=64)
    assert ok.sum() == 30 and (idx[~ok] >= 30).all() and idx[29] == 29


def test_put_back_returns_samples_to_the_front_of_the_buffer():
    buf = StreamBuffer()
    buf.append(SampleBlock(np.array([10.0, 10.05]), {"x": np.array([1.0, 2.0])}))
    block = buf.take_before(11.0)
    buf.append(SampleBlock(np.array([10.1]), {"x": np.array([3.0])}))
    buf.put_back(SampleBlock(block.t[1:], {"x": block.columns["x"][1:]}))
    again = buf.take_period(10.04, 12.0, keep_from=9.0)
    assert again.columns["x"].tolist() == [2.0, 3.0]
