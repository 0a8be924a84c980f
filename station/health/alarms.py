"""Station-side alarms: rules over diagnostic metrics with a duration and hysteresis.

A :class:`Rule` watches one metric of each source (an instrument, a Modbus device or
``"station"``). It is *raised* once the metric has been beyond ``above`` (or ``below``) for
``raise_after_s`` seconds, and *cleared* once it has been back on the good side of ``clear_at``
for ``clear_after_s`` seconds; each transition is one :class:`~fluxedge.common.messages.AlarmEvent`
carrying the time it happened, so alarms spooled while offline arrive later with their original
times. The engine is pure logic (times are passed in); :mod:`station.health.monitor` feeds it.

Metrics (unit; when they are evaluated):

- every alarm tick (1 s): ``SILENT_S`` (s since the instrument's last frame), ``CONNECTED`` (0/1),
  ``CLOCK_STEP_S`` (size of the clock step seen in the last tick, s);
- every diagnostics interval (60 s): ``MISSING_PCT``, ``CHECKSUM_ERROR_PCT`` (of frames),
  ``FLAGGED_PCT`` (samples the instrument flagged), ``SIGNAL_MEAN`` (%), ``SPOOL_OLDEST_S``,
  ``DISK_FREE_PCT``, ``CPU_TEMP_DEGC`` and any published diag name (``fluxedge.common.messages.DIAG_FIELDS``,
  ``FLAG_<NAME>``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from fluxedge.common.configschema import check, non_negative
from fluxedge.common.messages import ALARM_SEVERITIES, DIAG_FIELDS, NAME_PATTERN, AlarmEvent

#: metrics only the alarm engine sees (not published as diag values): name -> (unit, meaning)
ALARM_METRICS: dict[str, tuple[str, str]] = {
    "SILENT_S": ("s", "time since the instrument's last decoded frame"),
    "CONNECTED": ("1", "1 while the instrument's port is open"),
    "CLOCK_STEP_S": ("s", "size of the wall-clock step seen in the last alarm tick"),
    "MISSING_PCT": ("%", "samples missing in the diagnostics interval"),
    "CHECKSUM_ERROR_PCT": ("%", "frames rejected for a bad checksum in the interval"),
    "FLAGGED_PCT": ("%", "samples the instrument flagged as bad in the interval"),
    "SIGNAL_MEAN": ("%", "mean signal strength in the interval"),
    "SPOOL_OLDEST_S": ("s", "age of the oldest message waiting in the spool"),
    "DISK_FREE_PCT": ("%", "free space on the spool's file system"),
    "CPU_TEMP_DEGC": ("degC", "CPU temperature"),
}
#: metrics evaluated on the fast alarm tick
FAST_METRICS = ("SILENT_S", "CONNECTED", "CLOCK_STEP_S")
_FLAG = re.compile(r"FLAG_[A-Z0-9_]{1,40}")


def known_metric(name: str) -> bool:
    return name in ALARM_METRICS or name in DIAG_FIELDS or bool(_FLAG.fullmatch(name))


def metric_unit(name: str) -> str:
    if name in ALARM_METRICS:
        return ALARM_METRICS[name][0]
    return DIAG_FIELDS[name][0] if name in DIAG_FIELDS else "1"


@dataclass(frozen=True)
class Rule:
    """Raise when ``metric`` > ``above`` (or < ``below``) for ``raise_after_s``; clear when it is
    <= ``clear_at`` (or >= for ``below`` rules) for ``clear_after_s``. ``sources`` empty: all."""

    name: str
    metric: str
    above: float | None = None
    below: float | None = None
    raise_after_s: float = 0.0
    clear_at: float | None = None
    clear_after_s: float = 0.0
    severity: str = "warning"
    #: the raise message; {source}, {value}, {threshold}, {unit}, {after} and {observed} (what the
    #: source reported seeing, in words) are filled in. A message without {observed} gets it
    #: appended after a colon when the source gave one.
    message: str = "{source}: {metric} {value:.4g} {unit} beyond {threshold:g} {unit}"
    sources: tuple[str, ...] = ()

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def clear_threshold(self) -> float:
        return self.threshold if self.clear_at is None else self.clear_at

    def bad(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below  # type: ignore[operator]

    def good(self, value: float) -> bool:
        return value <= self.clear_threshold if self.above is not None else value >= self.clear_threshold

    def watches(self, source: str) -> bool:
        return not self.sources or source in self.sources


#: The built-in rules; ``[[alarm]]`` entries in the station config override or disable them.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("instrument_silent", "SILENT_S", above=30.0, clear_at=2.0, severity="critical",
         message="no data from {source} for {value:.0f} s"),
    # the text says what was observed (the port's last error, or a Modbus sensor's unanswered polls),
    # not a guess: a busy port or a sensor on a shared bus is no reason to climb the tower
    Rule("instrument_disconnected", "CONNECTED", below=0.5, raise_after_s=10.0, severity="critical",
         message="{source}: for more than {after:g} s, {observed}"),
    Rule("missing_samples_high", "MISSING_PCT", above=10.0, clear_at=2.0, clear_after_s=120.0,
         message="{source}: {value:.1f} % of the samples missing (limit {threshold:g} %)"),
    Rule("checksum_errors_high", "CHECKSUM_ERROR_PCT", above=1.0, clear_at=0.1, clear_after_s=120.0,
         message="{source}: {value:.2f} % of the frames failed their checksum (limit {threshold:g} %)"),
    Rule("diagnostic_flags_high", "FLAGGED_PCT", above=10.0, clear_at=5.0, clear_after_s=120.0,
         message="{source}: {value:.1f} % of the samples flagged by the instrument (rain, dirt, obstruction?)"),
    Rule("signal_low", "SIGNAL_MEAN", below=70.0, raise_after_s=300.0, clear_at=75.0, clear_after_s=300.0,
         message="{source}: mean signal strength {value:.0f} % (below {threshold:g} %: clean the optics)"),
    Rule("spool_backlog_old", "SPOOL_OLDEST_S", above=6 * 3600.0, clear_at=600.0,
         message="{source}: oldest unsent message is {value:.0f} s old (link down?)"),
    Rule("disk_almost_full", "DISK_FREE_PCT", below=10.0, clear_at=12.0, severity="critical",
         message="{source}: only {value:.1f} % of the data disk free"),
    Rule("clock_jump", "CLOCK_STEP_S", above=2.0, clear_at=2.0, clear_after_s=600.0,
         message="{source}: the wall clock stepped by {value:.1f} s"),
    Rule("cpu_temperature_high", "CPU_TEMP_DEGC", above=80.0, raise_after_s=120.0, clear_at=75.0,
         clear_after_s=120.0, message="{source}: CPU at {value:.0f} degC (enclosure too hot?)"),
)


@dataclass(frozen=True)
class AlarmRuleConfig:
    """A ``[[alarms]]`` entry of station.toml: overrides a built-in rule (by ``name``) or defines a
    new one (then ``metric`` and ``above`` or ``below`` are required). Thresholds are in the
    metric's unit."""

    name: str
    enabled: bool = True
    metric: str | None = None
    above: float | None = None
    below: float | None = None
    raise_after_s: float | None = field(default=None, metadata=check(non_negative))
    clear_at: float | None = None
    clear_after_s: float | None = field(default=None, metadata=check(non_negative))
    severity: str | None = None
    #: instruments (or "station") the rule watches; empty: every source that reports the metric
    sources: list[str] = field(default_factory=list)

    def validate(self) -> list[tuple[str, str]]:
        return check_rule_config(self)


def check_rule_config(cfg: AlarmRuleConfig) -> list[tuple[str, str]]:
    """Problems of one ``[[alarm]]`` entry as (key, message)."""
    if not NAME_PATTERN.fullmatch(cfg.name):
        return [("name", f"{cfg.name!r} must match {NAME_PATTERN.pattern} (lower case, digits, _ . -)")]
    builtin = any(r.name == cfg.name for r in DEFAULT_RULES)
    if cfg.metric is not None and not known_metric(cfg.metric):
        return [("metric", f"unknown metric {cfg.metric!r}; known: {', '.join(ALARM_METRICS)}, the diag names "
                           f"or FLAG_<NAME>")]
    if cfg.above is not None and cfg.below is not None:
        return [("below", "give either above or below, not both")]
    if not builtin and cfg.enabled:
        if cfg.metric is None:
            return [("metric", f"{cfg.name!r} is not a built-in rule ({', '.join(r.name for r in DEFAULT_RULES)}): "
                               f"a new rule needs metric")]
        if cfg.above is None and cfg.below is None:
            return [("above", "a new rule needs above or below")]
    if cfg.severity is not None and cfg.severity not in ALARM_SEVERITIES:
        return [("severity", f"must be one of {', '.join(ALARM_SEVERITIES)}, got {cfg.severity!r}")]
    for source in cfg.sources:
        if not NAME_PATTERN.fullmatch(source):
            return [("sources", f"{source!r} is not a source name (an instrument, a Modbus device or 'station')")]
    return []


def rules_from_config(entries: list[AlarmRuleConfig] | tuple = ()) -> list[Rule]:
    """The built-in rules with the config's overrides applied, disabled ones removed, new ones added."""
    rules = {r.name: r for r in DEFAULT_RULES}
    for cfg in entries:
        base = rules.get(cfg.name) or Rule(cfg.name, cfg.metric or "", message="{source}: " + cfg.name +
                                           " ({metric} {value:.4g} {unit}, limit {threshold:g} {unit})")
        if not cfg.enabled:
            rules.pop(cfg.name, None)
            continue
        changes: dict = {}
        if cfg.metric is not None:
            changes["metric"] = cfg.metric
        if cfg.above is not None:
            changes.update(above=cfg.above, below=None)
        if cfg.below is not None:
            changes.update(below=cfg.below, above=None)
        if cfg.above is not None or cfg.below is not None:
            changes["clear_at"] = cfg.clear_at  # a new threshold without a clear level clears at the threshold
        elif cfg.clear_at is not None:
            changes["clear_at"] = cfg.clear_at
        for key in ("raise_after_s", "clear_after_s", "severity"):
            if getattr(cfg, key) is not None:
                changes[key] = getattr(cfg, key)
        if cfg.sources:
            changes["sources"] = tuple(cfg.sources)
        rules[cfg.name] = replace(base, **changes)
    return list(rules.values())


@dataclass
class _State:
    raised: bool = False
    since: float | None = None  # when the pending transition's condition started to hold
    value: float | None = None


class AlarmEngine:
    """Evaluates rules over observations; returns each raise/clear exactly once."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        self._states: dict[tuple[str, str], _State] = {}

    def observe(self, time_s: float, source: str, metrics: dict[str, float | None],
                observed: dict[str, str] | None = None) -> list[AlarmEvent]:
        """Feed ``source``'s metrics measured at ``time_s`` [Unix s]; the transitions they cause.
        ``observed``: per metric, what the source saw, in words, for the raise messages."""
        events = []
        for rule in self.rules:
            value = metrics.get(rule.metric)
            if value is None or not rule.watches(source) or not math.isfinite(value):
                continue
            state = self._states.setdefault((rule.name, source), _State())
            event = self._step(rule, state, time_s, source, float(value), (observed or {}).get(rule.metric, ""))
            if event is not None:
                events.append(event)
        return events

    def _step(self, rule: Rule, state: _State, t: float, source: str, value: float,
              observed: str = "") -> AlarmEvent | None:
        state.value = value
        pending = rule.good(value) if state.raised else rule.bad(value)
        if not pending:
            state.since = None
            return None
        if state.since is None:
            state.since = t
        wait = rule.clear_after_s if state.raised else rule.raise_after_s
        if t - state.since < wait:
            return None
        state.since = None
        state.raised = not state.raised
        unit = metric_unit(rule.metric)
        if state.raised:
            text = rule.message.format(source=source, value=value, threshold=rule.threshold, unit=unit,
                                       metric=rule.metric, after=rule.raise_after_s,
                                       observed=observed or f"{rule.metric} {value:.4g} {unit}")
            if observed and "{observed}" not in rule.message:
                text += f": {observed}"
        else:
            text = f"{source}: {rule.name} cleared ({rule.metric} {value:.4g} {unit})"
        return AlarmEvent(t, rule.name, source, "raised" if state.raised else "cleared", rule.severity,
                          text[:500], value)

    def active(self) -> list[tuple[str, str]]:
        """(rule, source) pairs currently raised."""
        return sorted(key for key, s in self._states.items() if s.raised)
