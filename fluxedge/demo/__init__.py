"""The demo tower (``fluxedge demo``): emulated instruments, a station, a broker, a collector and
InfluxDB on one machine. :mod:`~fluxedge.demo.servers` launches mosquitto and influxd (the tests
and benches use it too), :mod:`~fluxedge.demo.v2shim` gives Debian's InfluxDB 1.6 the 2.x write
endpoint, :mod:`~fluxedge.demo.towerconfig` writes a station TOML for emulated instruments."""
