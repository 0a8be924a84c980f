"""fluxedge collector: MQTT ingest, InfluxDB sinks, alarms and export."""
