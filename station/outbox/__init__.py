"""The outbox: records in, MQTT out, nothing lost.

:mod:`~station.outbox.spool` keeps every record on disk (SQLite, transactions, a reserve for a
full disk) until the broker acknowledges it; :mod:`~station.outbox.publisher` drains it over MQTT.
"""
