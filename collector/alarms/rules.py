"""Fleet rules: what the collector watches on top of each station's own alarms.

Each rule type reads what stations publish and says, per station (and instrument), whether the
condition is bad, good, or in between (hysteresis: it keeps its state), with the value behind it:

- ``offline``: the station's last will ("offline" on its retained status topic), or no message at
  all for ``threshold`` s;
- ``no_flux``: no flux record for ``threshold`` averaging periods while the station is online;
- ``qc_share``: share [%] of the flux periods of the last ``window_s`` whose QC flag
  (``*_SSITC_TEST``, Mauder & Foken 2004) is 2 for any of FC, LE, H, FCH4;
- ``signal_falling``: an analyser's signal strength (LI-7500/LI-7200 ``SIGNAL_MEAN``, LI-7700 RSSI):
  below ``threshold`` %, or falling faster than ``decline_per_day`` %/day (least-squares slope of
  hourly means over ``window_s``) while below ``watch_below``;
- ``spool_backlog``: the age of the oldest unsent message in the station's spool (``SPOOL_OLDEST_S``);
- ``clock_offset``: |station clock - collector clock| [s], from the freshest diag record's time
  against its arrival (the message latency is subtracted as its minimum over the window);
- ``disk_low``: free space on the station's data disk [MB].

Defaults are shipped for every supported instrument (signal thresholds per analyser family);
``[[alarms.rule]]`` in collector.toml overrides a built-in rule by name or adds one of a type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from fluxedge.common.configschema import between, non_negative, positive
from fluxedge.common.configschema import check as _check
from fluxedge.common.messages import INSTRUMENT_FAMILIES

RULE_TYPES = ("offline", "no_flux", "qc_share", "signal_falling", "spool_backlog", "clock_offset", "disk_low")
#: units of ``threshold`` / ``clear_at`` per type
UNITS = {"offline": "s", "no_flux": "periods", "qc_share": "%", "signal_falling": "%", "spool_backlog": "s",
         "clock_offset": "s", "disk_low": "MB"}
#: types whose threshold is a lower limit (bad below it)
LOWER_LIMIT = frozenset({"signal_falling", "disk_low"})
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class FleetRule:
    """An effective rule. Times in s; ``threshold`` and ``clear_at`` in :data:`UNITS` of the type."""

    name: str
    type: str
    severity: str
    threshold: float
    clear_at: float
    check: str
    #: condition bad this long before the alarm is raised, good this long before it clears
    raise_after_s: float = 0.0
    clear_after_s: float = 0.0
    #: a reminder while raised and not acknowledged (0: never)
    renotify_s: float = 4 * 3600.0
    #: raised this many times within flap_window_s: flapping (it then clears only after
    #: flap_window_s of good, and its re-raises are not notified)
    flap_max: int = 3
    flap_window_s: float = 3600.0
    window_s: float = 86400.0
    decline_per_day: float = 0.0
    watch_below: float = 100.0
    min_points: int = 1
    stations: tuple[str, ...] = ()
    families: tuple[str, ...] = ()

    def watches(self, station: str, family: str | None = None) -> bool:
        if self.stations and station not in self.stations:
            return False
        return not self.families or family in self.families


def _signal(name: str, families: tuple[str, ...], below: float, clear_at: float, rate: float, watch: float,
            check_text: str) -> FleetRule:
    return FleetRule(name, "signal_falling", "warning", below, clear_at, check_text, raise_after_s=3600.0,
                     clear_after_s=1800.0, renotify_s=24 * 3600.0, window_s=5 * 86400.0, decline_per_day=rate,
                     watch_below=watch, min_points=24, families=families)


DEFAULT_RULES: tuple[FleetRule, ...] = (
    FleetRule("station_offline", "offline", "critical", 300.0, 60.0,
              "power, the modem or radio link, and the station service (journalctl -u fluxedge-station)",
              raise_after_s=60.0, renotify_s=6 * 3600.0),
    FleetRule("no_flux", "no_flux", "warning", 3.0, 1.5,
              "fluxedge station status on the node: is the sonic delivering, is the flux worker failing?",
              renotify_s=12 * 3600.0),
    FleetRule("qc_flag2_share", "qc_share", "warning", 50.0, 30.0,
              "rain or dew on the sonic or the analyser, an obstructed fetch, the instrument diagnostics",
              window_s=86400.0, min_points=8, renotify_s=24 * 3600.0),
    _signal("li7500_window_dirty", ("li7500",), 80.0, 85.0, 2.0, 92.0,
            "clean the LI-7500 optical windows (salt, dust, pollen, bird droppings), check the desiccant"),
    _signal("li7200_window_dirty", ("li7200",), 80.0, 85.0, 2.0, 92.0,
            "clean the LI-7200 cell windows and replace the intake filter"),
    _signal("li7700_mirror_dirty", ("li7700",), 20.0, 30.0, 5.0, 60.0,
            "clean the LI-7700 lower mirror (washer reservoir and spray), check for spider webs and salt"),
    FleetRule("spool_backlog", "spool_backlog", "warning", 3600.0, 300.0,
              "the station's uplink (modem signal, data quota) and whether the broker is reachable",
              raise_after_s=600.0, renotify_s=12 * 3600.0),
    FleetRule("clock_offset", "clock_offset", "warning", 5.0, 2.0,
              "NTP on the station (timedatectl, chronyc tracking): fluxes of shifted periods do not "
              "match other data", raise_after_s=600.0, clear_after_s=600.0, window_s=3600.0, min_points=3),
    FleetRule("disk_low", "disk_low", "critical", 1000.0, 1500.0,
              "the station's data disk: the raw archive's limits ([archive] in station.toml), old files",
              raise_after_s=300.0, renotify_s=12 * 3600.0),
)


def _one_of(choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"


def _names(v: list[str]) -> str | None:
    bad = [n for n in v if not _NAME.fullmatch(n)]
    return f"names must match {_NAME.pattern}, got {bad[0]!r}" if bad else None


def _families(v: list[str]) -> str | None:
    unknown = [f for f in v if f not in INSTRUMENT_FAMILIES]
    return (f"unknown instrument family {unknown[0]!r} (known: {', '.join(INSTRUMENT_FAMILIES)})"
            if unknown else None)


@dataclass(frozen=True)
class FleetRuleConfig:
    """One ``[[alarms.rule]]``: overrides the built-in rule ``name`` (only the keys given), or,
    with ``type``, defines a new one (``threshold`` then required)."""

    name: str = field(metadata=_check(lambda v: None if _NAME.fullmatch(v) else
                                     f"must match {_NAME.pattern}, got {v!r}"))
    type: str | None = field(default=None, metadata=_check(_one_of(RULE_TYPES)))
    enabled: bool = True
    severity: str | None = field(default=None, metadata=_check(_one_of(("info", "warning", "critical"))))
    threshold: float | None = None
    clear_at: float | None = None
    check: str | None = None
    raise_after_s: float | None = field(default=None, metadata=_check(non_negative))
    clear_after_s: float | None = field(default=None, metadata=_check(non_negative))
    renotify_s: float | None = field(default=None, metadata=_check(non_negative))
    flap_max: int | None = field(default=None, metadata=_check(between(2, 1000)))
    flap_window_s: float | None = field(default=None, metadata=_check(positive))
    window_s: float | None = field(default=None, metadata=_check(positive))
    decline_per_day: float | None = field(default=None, metadata=_check(non_negative))
    watch_below: float | None = None
    min_points: int | None = field(default=None, metadata=_check(between(1, 100000)))
    stations: list[str] = field(default_factory=list, metadata=_check(_names))
    families: list[str] = field(default_factory=list, metadata=_check(_families))

    def validate(self) -> list[tuple[str, str]]:
        builtin = {r.name: r for r in DEFAULT_RULES}.get(self.name)
        if builtin is None and self.type is None:
            return [("type", f"{self.name!r} is not a built-in rule ({', '.join(r.name for r in DEFAULT_RULES)}); "
                             f"a new rule needs type ({', '.join(RULE_TYPES)}) and threshold")]
        if builtin is not None and self.type not in (None, builtin.type):
            return [("type", f"built-in rule {self.name!r} is of type {builtin.type}; give a new rule another name")]
        if builtin is None and self.threshold is None:
            return [("threshold", f"required for a new rule (in {UNITS[self.type]})")]
        rule = self.apply(builtin)
        lower = rule.type in LOWER_LIMIT
        if (rule.clear_at < rule.threshold) if lower else (rule.clear_at > rule.threshold):
            side = "at or above" if lower else "at or below"
            return [("clear_at", f"must be {side} threshold ({rule.threshold:g} {UNITS[rule.type]}) so that the "
                                 f"alarm has hysteresis, got {rule.clear_at:g}")]
        return []

    def apply(self, base: FleetRule | None) -> FleetRule:
        given = {k: getattr(self, k) for k in ("severity", "threshold", "clear_at", "check", "raise_after_s",
                                                "clear_after_s", "renotify_s", "flap_max", "flap_window_s",
                                                "window_s", "decline_per_day", "watch_below", "min_points")
                 if getattr(self, k) is not None}
        if self.stations:
            given["stations"] = tuple(self.stations)
        if self.families:
            given["families"] = tuple(self.families)
        if base is None:
            rtype = self.type or "offline"
            threshold = given.pop("threshold", 0.0)
            base = FleetRule(self.name, rtype, "warning", threshold, given.pop("clear_at", threshold),
                             f"see rule {self.name}")
        return replace(base, **given)


def effective_rules(configs: list[FleetRuleConfig] | tuple = ()) -> list[FleetRule]:
    """The built-in rules with ``[[alarms.rule]]`` applied (disabled ones dropped), in order."""
    rules = {r.name: r for r in DEFAULT_RULES}
    for cfg in configs:
        rules[cfg.name] = cfg.apply(rules.get(cfg.name))
        if not cfg.enabled:
            rules.pop(cfg.name)
    return list(rules.values())


def is_bad(rule: FleetRule, value: float) -> bool:
    return value < rule.threshold if rule.type in LOWER_LIMIT else value > rule.threshold


def is_good(rule: FleetRule, value: float) -> bool:
    return value >= rule.clear_at if rule.type in LOWER_LIMIT else value <= rule.clear_at
