"""A period block at its instruments' resolution: what the station archives and computes from.

Each block channel is rounded to the step of the instrument that gave it (the family's
``RESOLUTION``, :mod:`firmware_bridge.resolution`): the sonic's u, v, w, Ts, each analyser's gases,
pressure, thermistor and signal strength. The slow met sensor's air temperature is kept at 7
significant digits (a float32 register's precision; scaled integer registers have fewer). The live
fluxes are computed from the rounded block and the archive writes it with ``repr``, which is then
short (at most the step's digits) and parses back to the same doubles: reprocessing the file
repeats the live results bit for bit, and reads as fast as an LI-COR file.
"""

from __future__ import annotations

from firmware_bridge.families import FAMILIES, family
from firmware_bridge.resolution import at_resolution
from station.acquisition.periodblock import PeriodBlock, TowerInfo

#: block channel <- the sonic family's channel
SONIC_SOURCES = {"u": "u", "v": "v", "w": "w", "t_sonic": "t_sonic"}
#: block channel (per analyser, see :meth:`AnalyserInfo.key`) <- the analyser family's channel
GAS_SOURCES = {"co2": "co2", "h2o": "h2o", "ch4": "ch4", "pressure": "pressure", "t_air": "temperature",
               "signal_strength": "signal_strength"}
#: channels no instrument family describes: the met sensor's Ta, and pressure taken from it when
#: the analyser has none (7 significant digits: a float32 register's precision)
MET_RESOLUTION = {"ta_met": ".7g", "pressure": ".7g"}


def _steps(driver: str | None) -> dict[str, str]:
    return dict(getattr(family(driver), "RESOLUTION", {})) if driver in FAMILIES else {}


def block_resolution(tower: TowerInfo) -> dict[str, str]:
    """Block channel -> its step, for this tower's instruments (channels of unknown drivers are absent)."""
    steps = dict(MET_RESOLUTION)
    sonic = _steps(tower.sonic_driver)
    steps.update({block: sonic[src] for block, src in SONIC_SOURCES.items() if src in sonic})
    for info in tower.analysers:
        gas = _steps(info.driver)
        steps.update({info.key(block): gas[src] for block, src in GAS_SOURCES.items() if src in gas})
    return steps


def at_instrument_resolution(block: PeriodBlock, tower: TowerInfo) -> PeriodBlock:
    """The block with every channel of :func:`block_resolution` rounded to its step (a new block;
    NaN stays NaN; rounding a block twice changes nothing)."""
    steps = block_resolution(tower)
    cols = {k: at_resolution(v, steps[k]) if k in steps else v for k, v in block.columns.items()}
    return PeriodBlock(block.start_s, block.end_s, block.rate_hz, block.time_s, cols, block.expected, block.present)
