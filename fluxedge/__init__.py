"""fluxedge: eddy-covariance flux tower software.

Rooms: :mod:`fluxedge.common` (what the station and the collector share: the MQTT wire contract,
MQTT client set-up, config schema, logging, site time), :mod:`fluxedge.cli` (the ``fluxedge``
command, the composition root: the only module that imports station, collector and
firmware_bridge together) and :mod:`fluxedge.demo` (the demo tower and the servers it launches).
"""

__version__ = "0.1.0"
