"""Stream buffers and alignment onto the sonic's grid."""

import numpy as np

from station.acquisition import SampleBlock, StreamBuffer
from station.align import place_on_grid, regular_grid


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


def test_two_samples_claiming_one_slot_keep_the_first():
    grid = np.array([0.0, 0.05, 0.10])
    out = place_on_grid(grid, np.array([0.049, 0.051, 0.2]), {"x": np.array([1.0, 2.0, 3.0])}, 0.025)
    assert np.array_equal(out["x"], [np.nan, 1.0, np.nan], equal_nan=True)
