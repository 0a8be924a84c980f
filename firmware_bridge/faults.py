"""Faults the emulator injects on demand, and the ``--fault`` syntax that schedules them.

``KIND[:PROBABILITY][@START_S[+DURATION_S]]``, e.g. ``noise``, ``bad_checksum:0.05``,
``silence@10+5`` (nothing from 10 s to 15 s after start), ``disconnect@20+3``. Without a
duration the fault lasts until the emulator stops. Per-frame faults hit each frame with the
given probability (default 0.2); state faults (conditions, silence, disconnect, wrong baud) hold
for their whole window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from firmware_bridge.device import CONDITIONS

#: Fault kind -> what a technician would see on a real tower.
KINDS = {
    "noise": "random bytes between frames (electrical noise, a loose shield)",
    "truncate": "frames cut short (a brown-out, a buffer overrun)",
    "bad_checksum": "frames whose checksum or signature does not match (bit errors on the line)",
    "rain": "the instrument's rain/wet-transducer diagnostics",
    "obstruction": "the instrument's obstructed-path diagnostics (spider web, bird, ice)",
    "low_signal": "the instrument's low-signal diagnostics (dirty window or mirror)",
    "counter_gap": "records dropped: the instrument's counter or index jumps",
    "silence": "the instrument sends nothing",
    "disconnect": "the port disappears (USB adapter unplugged, TCP connection refused) and reappears",
    "wrong_baud": "the instrument runs at a different baud rate from the driver",
    "transducer_noise": "a failing sonic transducer pair: white noise on the vertical wind, so that its "
                        "variance is far above what u* allows and the periods fail the ITC test (QC flag 2)",
}
PER_FRAME = ("noise", "truncate", "bad_checksum", "counter_gap")
#: Standard deviation of the ``transducer_noise`` fault's noise on w [m s-1]: with the default
#: turbulence (sigma_w 0.35, u* 0.31 m s-1) sigma_w/u* goes from about 1.1 to 6.5, far beyond the
#: 100 % deviation from the ITC model (Thomas & Foken 2002) that makes a period's flag 2 (Mauder &
#: Foken 2004). Measured on the engine (10 Hz, 100-sample periods): 100 % of the periods flag 2
#: with it (43 % at 1.0 m s-1), 5 % without.
TRANSDUCER_NOISE_M_S = 2.0
DEFAULT_PROBABILITY = 0.2

_SPEC = re.compile(r"^(?P<kind>[a-z_]+)(?::(?P<p>[0-9.]+))?(?:@(?P<start>[0-9.]+)(?:\+(?P<dur>[0-9.]+))?)?$")


class FaultSpecError(ValueError):
    """A ``--fault`` argument that cannot be understood; the message says why."""


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: ``kind`` from :data:`KINDS`, active in [start_s, start_s + duration_s)."""

    kind: str
    start_s: float = 0.0
    duration_s: float = math.inf
    probability: float = DEFAULT_PROBABILITY

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s


def parse_fault(text: str) -> Fault:
    """A :class:`Fault` from ``KIND[:PROBABILITY][@START_S[+DURATION_S]]``."""
    m = _SPEC.match(text.strip())
    if not m:
        raise FaultSpecError(f"fault {text!r}: expected KIND[:PROBABILITY][@START_S[+DURATION_S]], "
                             f"e.g. 'noise:0.1' or 'silence@10+5'")
    kind = m["kind"]
    if kind not in KINDS:
        raise FaultSpecError(f"fault {text!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    try:
        probability = float(m["p"]) if m["p"] else DEFAULT_PROBABILITY
        start = float(m["start"]) if m["start"] else 0.0
        duration = float(m["dur"]) if m["dur"] else math.inf
    except ValueError:
        raise FaultSpecError(f"fault {text!r}: numbers must look like 0.2 or 10") from None
    if not 0.0 <= probability <= 1.0:
        raise FaultSpecError(f"fault {text!r}: probability {probability} is not between 0 and 1")
    if m["p"] and kind not in PER_FRAME:
        raise FaultSpecError(f"fault {text!r}: a probability applies only to {', '.join(PER_FRAME)}")
    return Fault(kind, start, duration, probability)


def active_condition(faults: list[Fault], t_s: float) -> str | None:
    """The sensor condition (rain, obstruction, low signal) in force at ``t_s``, if any."""
    for fault in faults:
        if fault.kind in CONDITIONS and fault.active(t_s):
            return fault.kind
    return None
