"""What both sides of the network share, and nothing else: the MQTT wire contract
(:mod:`~fluxedge.common.messages`, :mod:`~fluxedge.common.mqttnames`), the MQTT client set-up
and its configuration (:mod:`~fluxedge.common.mqttclient`, :mod:`~fluxedge.common.mqttconfig`), the
TOML config schema helpers (:mod:`~fluxedge.common.configschema`), structured logging
(:mod:`~fluxedge.common.logs`), systemd notification (:mod:`~fluxedge.common.sdnotify`) and the
site's local standard time (:mod:`~fluxedge.common.sitetime`).

Imports only the standard library, paho-mqtt and orjson: never station, collector or
firmware_bridge.
"""
