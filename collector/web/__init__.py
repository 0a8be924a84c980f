"""``fluxedge web``: the fleet page, a station's page and the alarms, served from the collector side.

Starlette (ASGI) under uvicorn, Jinja2 templates; the ``web`` extra. It reads InfluxDB (the same
measurements the collector writes) and, for acknowledging and silencing, speaks to the leading
collector over MQTT as ``fluxedge alarms`` does. Every asset ships in the package (no CDN): plots
are the scientists' matplotlib figures (:mod:`collector.science.plots`) inlined as SVG.
"""
