"""fluxedge station: the edge daemon on the tower.

Rooms, in the order data flows through them:

- :mod:`station.acquisition`: instruments in (serial/TCP readers over firmware_bridge drivers, Modbus
  met sensors), host clock, samples aligned on the period's grid, period blocks out;
- :mod:`station.processing`: the flux worker process that turns each period block into fluxes;
- :mod:`station.archive`: the raw archive (EddyPro-readable ``.ghg`` files);
- :mod:`station.health`: diagnostics per minute, alarm rules, the monitor, status file, host probes;
- :mod:`station.outbox`: the on-disk spool and the MQTT publisher that drains it;
- :mod:`station.flux`: the pure NumPy flux engine; :mod:`station.rawdata`: raw-file readers;
  :mod:`station.reprocess`: ``fluxedge flux process``, files in and fluxes out, offline.

:mod:`station.daemon` wires the rooms together, :mod:`station.config` loads ``station.toml``,
:mod:`station.check` checks what the daemon needs. The station imports firmware_bridge and
fluxedge.common, never the collector.
"""
