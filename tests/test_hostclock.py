"""The station's time base: monotonic stamps, wall time by an anchor that moves only on a step."""

from types import SimpleNamespace

import numpy as np
import pytest

from station.acquisition.hostclock import HostClock
from station.acquisition.readers import InstrumentReader
from station.config import InstrumentConfig


class FakeTime:
    def __init__(self):
        self.mono, self.wall = 1000.0, 1_700_000_000.0

    def tick(self, s, wall_extra=0.0):
        self.mono += s
        self.wall += s + wall_extra


def test_stamps_stay_continuous_until_a_step_is_seen():
    ft = FakeTime()
    clock = HostClock(step_s=0.5, wall=lambda: ft.wall, monotonic=lambda: ft.mono)
    assert clock.wall() == pytest.approx(ft.wall)
    ft.tick(10.0, wall_extra=0.2)  # slew-sized disagreement: ignored, stamps keep the monotonic pace
    assert clock.check() is None and clock.wall() == pytest.approx(ft.wall - 0.2)
    ft.tick(1.0, wall_extra=-30.0)  # the wall clock is stepped back (e.g. NTP after a boot without RTC)
    before = clock.wall()
    assert before == pytest.approx(ft.wall + 29.8)
    assert clock.check() == pytest.approx(-29.8) and clock.steps == 1
    assert clock.wall() == pytest.approx(ft.wall)
    assert clock.wall(ft.mono - 1.0) == pytest.approx(ft.wall - 1.0)  # any monotonic time maps through it


def test_reader_stamps_batches_from_the_station_clock():
    ft = FakeTime()
    clock = HostClock(wall=lambda: ft.wall, monotonic=lambda: ft.mono)
    reader = InstrumentReader(InstrumentConfig(name="sonic", driver="csat3", port="/dev/null"), 20.0, clock)

    batch = SimpleNamespace(n=3, columns={"u": np.array([1.0, 2.0, 3.0])})
    ft.tick(5.0, wall_extra=3600.0)  # the driver's wall-clock ``now`` is off by an hour: not used
    reader._on_batch(batch, ft.wall)
    block = reader.buffer.take_before(float("inf"))
    assert np.allclose(block.t, clock.wall() - np.array([0.1, 0.05, 0.0]))
    assert block.t[-1] < ft.wall - 3000
