"""fluxedge station: the edge daemon on the tower (acquisition, flux engine, spool, MQTT)."""

__version__ = "0.1.0"
