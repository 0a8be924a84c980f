"""The flux engine: pure NumPy, arrays in, results out; no I/O, no threads, no clocks.

``process_period(samples, site) -> dict`` turns one averaging period of aligned high-frequency
samples into AmeriFlux-named results (see :data:`station.messages.FLUX_FIELDS` for units).
"""

from station.flux.period import PeriodSite, process_period

__all__ = ["PeriodSite", "process_period"]
