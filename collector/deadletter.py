"""The dead-letter topic: an invalid message is republished there with its reason, counted per
reason, and logged once per reason (the first time it is seen), so a misbehaving station cannot
flood the log."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable

from fluxedge.common import messages
from fluxedge.common.logs import event

log = logging.getLogger("collector")
#: bytes of the offending payload kept in the dead letter
KEEP_BYTES = 4096
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\d.e+-]*|\[[^\]]*\]")


def reason_key(reason: str) -> str:
    """The reason with its variable parts (names, numbers, indices) blanked: what is counted."""
    return _VARIABLE.sub("_", reason)[:120]


class DeadLetters:
    def __init__(self, prefix: str, publish: Callable[[str, bytes], None]) -> None:
        self.topic = messages.deadletter_topic(prefix)
        self._publish = publish
        self._lock = threading.Lock()
        #: reason key -> messages dead-lettered for it
        self.counts: dict[str, int] = {}

    def send(self, topic: str, payload: bytes, reason: str) -> None:
        key = reason_key(reason)
        with self._lock:
            first = key not in self.counts
            self.counts[key] = self.counts.get(key, 0) + 1
        if first:
            event(log, "dead_letter", logging.WARNING, topic=topic[:200], reason=reason[:300],
                  note="logged once per reason; counted in the collector metrics")
        body = json.dumps({"reason": reason, "topic": topic, "bytes": len(payload),
                           "payload": payload[:KEEP_BYTES].decode("utf-8", errors="replace")})
        self._publish(self.topic, body.encode())
