"""Offline reprocessing (``fluxedge flux process``): raw files in, flux tables out.

:mod:`~station.reprocess.enginesetup` turns a file's metadata into the engine's setup as EddyPro
7.0.9 does (the station's worker uses it too, so its archive reprocesses bit for bit),
:mod:`~station.reprocess.periodjoin` joins files into clock-aligned periods,
:mod:`~station.reprocess.command` runs files through the engine in parallel and writes the
outputs, :mod:`fluxedge.common.ameriflux` the AmeriFlux-named table (shared with the collector's export).
"""
