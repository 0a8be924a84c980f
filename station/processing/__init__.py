"""Processing: period blocks in, flux records out, in a worker process.

:mod:`~station.processing.fluxworker` runs the worker process, :mod:`~station.processing.fluxjob`
archives a block and computes it through the same metadata path as ``fluxedge flux process``,
:mod:`~station.processing.runtime` sets process-level numeric settings.
"""
