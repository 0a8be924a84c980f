"""The flux engine: pure NumPy, arrays in, results out; no I/O, no threads, no clocks.

:func:`station.flux.pipeline.process` turns one averaging period of aligned high-frequency samples
(a :class:`~station.flux.pipeline.Setup` saying what the columns are) into AmeriFlux-named results.
The modules import only NumPy and each other; the station's worker and ``fluxedge flux process``
drive it through :mod:`station.reprocess.enginesetup`.
"""
