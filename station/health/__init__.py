"""Health: diagnostics and alarms on the station.

:mod:`~station.health.diagnostics` sums each instrument's flags per minute,
:mod:`~station.health.alarms` holds the alarm rules and their engine,
:mod:`~station.health.monitor` feeds them and emits diag/alarm records,
:mod:`~station.health.status` writes the status file, :mod:`~station.health.sysprobe` reads the
host (CPU temperature, disk, NTP), :mod:`~station.health.monitorconfig` the config sections.
"""
