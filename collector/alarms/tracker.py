"""The fleet's alarm state: observations in, transitions out. Pure logic, times passed in.

:class:`FleetTracker` keeps, per station, what the fleet rules need (status, last contact, recent
flux QC, hourly signal means, spool age, clock offset, disk) and one :class:`_RuleState` per
(rule, station, source). :meth:`FleetTracker.evaluate` applies each rule's hysteresis (a raise level
and a clear level), its durations (bad for ``raise_after_s`` before raising, good for
``clear_after_s`` before clearing), flapping suppression and reminders. The station's own alarms
come in through :meth:`FleetTracker.on_station_alarm` and share the same model, acknowledgement,
silences and reminders.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field, replace

import numpy as np

from collector.alarms.model import Alarm, AlarmKey, Silence, Transition, alarm_id
from collector.alarms.rules import FleetRule, is_bad, is_good
from fluxedge.common.messages import AlarmEvent, DiagRecord, FluxRecord

QC_FIELDS = ("FC_SSITC_TEST", "LE_SSITC_TEST", "H_SSITC_TEST", "FCH4_SSITC_TEST")
HOUR_S = 3600.0
#: a diag record within this of the collector's clock [s] is current even if older than the last
#: one taken (the station's clock was put right). A snapshot the spool sends again within FRESH_S
#: of its making cannot be told from a current one: it counts until the station's next diag
#: record, shorter than any shipped rule's raise_after_s.
FRESH_S = 120.0
#: flux periods kept per station for the QC share (two months of half-hours)
MAX_QC_PERIODS = 3000
DAY_S = 86400.0
#: how a station rule's alarm is to be checked, by name (the station's text says what it saw)
STATION_RULE_CHECKS = {
    "instrument_silent": "the instrument's power and cable, and its port on the station",
    "instrument_disconnected": "the instrument's power and cable, the serial adapter or TCP address",
    "missing_samples_high": "the instrument's output rate and the serial line (baud, cable length)",
    "checksum_errors_high": "the serial cable, grounding and baud rate",
    "diagnostic_flags_high": "rain, dew, dirt or an obstruction on the instrument",
    "signal_low": "clean the analyser's optics",
    "spool_backlog_old": "the station's uplink and the broker",
    "disk_almost_full": "the station's data disk",
    "clock_jump": "NTP on the station",
    "cpu_temperature_high": "the enclosure's ventilation and shade",
}


@dataclass
class StationView:
    """What the collector knows of one station. Times are Unix s (collector clock)."""

    online: bool | None = None
    site: str | None = None
    families: dict[str, str] = field(default_factory=dict)
    first_seen_s: float | None = None
    last_seen_s: float | None = None
    period_s: float = 1800.0
    last_flux_end_s: float | None = None
    #: period end -> worst QC flag of the period's fluxes (a period sent again counts once), oldest first
    qc: dict[float, float] = field(default_factory=dict)
    #: source -> {hour index: (sum, count)} of SIGNAL_MEAN
    signal_hours: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    last_values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: source -> record time [Unix s, station clock] of its last_values (an older record, a backlog
    #: or a redelivery after a station restart, does not overwrite them unless fresh: FRESH_S)
    last_values_s: dict[str, float] = field(default_factory=dict)
    #: (arrival s, newest record time in the message - arrival) of diag messages
    clock: collections.deque = field(default_factory=lambda: collections.deque(maxlen=500))


@dataclass
class _RuleState:
    bad_since: float | None = None
    good_since: float | None = None
    alarm: Alarm | None = None
    raises: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))


@dataclass(frozen=True)
class Reading:
    """A rule's verdict for one station/source: ``value`` None when there is nothing to judge."""

    source: str
    value: float | None
    what: str
    last_values: dict[str, float | None]
    forced_bad: bool = False


class FleetTracker:
    def __init__(self, rules: list[FleetRule]) -> None:
        self.rules = rules
        self.stations: dict[str, StationView] = {}
        self.states: dict[AlarmKey, _RuleState] = {}
        #: the station's own alarms, by key
        self.station_alarms: dict[AlarmKey, Alarm] = {}
        #: the spool delivers at least once, so an event again (a station killed before its broker's
        #: PUBACK) is no new alarm: the events taken, and the time of the newest, by key
        self.station_events_seen: dict[AlarmKey, collections.deque] = {}
        self.station_event_s: dict[AlarmKey, float] = {}
        self.silences: dict[str, Silence] = {}

    # --- observations ---

    def view(self, station: str, now: float) -> StationView:
        v = self.stations.get(station)
        if v is None:
            v = self.stations[station] = StationView(first_seen_s=now)
        return v

    def seen(self, station: str, now: float) -> None:
        self.view(station, now).last_seen_s = now

    def on_status(self, station: str, state: str, now: float, site: str | None = None,
                  families: dict[str, str] | None = None) -> None:
        v = self.view(station, now)
        v.online = state == "online"
        if v.online:
            v.last_seen_s = now
        if site:
            v.site = site
        if families:
            v.families = dict(families)

    def on_flux(self, record: FluxRecord, now: float) -> None:
        v = self.view(record.station, now)
        v.last_seen_s = now
        v.period_s = max(1.0, record.period_end - record.period_start)
        v.last_flux_end_s = max(v.last_flux_end_s or 0.0, record.period_end)
        flags = [record.values.get(k) for k in QC_FIELDS]
        flags = [f for f in flags if f is not None and math.isfinite(f)]
        if flags:
            v.qc[record.period_end] = max(flags)
            if len(v.qc) > MAX_QC_PERIODS:
                del v.qc[min(v.qc)]

    def on_diag(self, station: str, records: list[DiagRecord], now: float) -> None:
        v = self.view(station, now)
        v.last_seen_s = now
        newest = max(r.time for r in records)
        v.clock.append((now, newest - now))
        for r in records:
            # newer than what we hold, or fresh by the collector's clock (a station whose clock was
            # put right steps back; what the spool sends again after a restart is old by both)
            if r.time >= v.last_values_s.get(r.source, -math.inf) or abs(now - r.time) <= FRESH_S:
                v.last_values.setdefault(r.source, {}).update(r.values)
                v.last_values_s[r.source] = r.time
            signal = r.values.get("SIGNAL_MEAN")
            if signal is not None and math.isfinite(signal):
                hours = v.signal_hours.setdefault(r.source, {})
                hour = int(r.time // HOUR_S)
                if hour not in hours:  # a new hour: the month-old ones go
                    hours[hour] = [0.0, 0]
                    for old in [h for h in hours if h < hour - 30 * 24]:
                        del hours[old]
                hours[hour][0] += signal
                hours[hour][1] += 1

    def on_station_alarm(self, station: str, events: list[AlarmEvent], now: float) -> list[Transition]:
        """The station's own raised/cleared events, as alarms of origin "station".

        An event taken before, or one older than the newest taken for its key and not fresh by the
        collector's clock (:data:`FRESH_S`), is a redelivery and changes nothing; a station whose
        clock was put right steps back, and its fresh events count.
        """
        v = self.view(station, now)
        v.last_seen_s = now
        out = []
        for e in sorted(events, key=lambda e: e.time):
            key = AlarmKey(e.alarm, station, e.source)
            seen = self.station_events_seen.setdefault(key, collections.deque(maxlen=64))
            if (e.time, e.state) in seen:
                continue  # the same event again
            if e.time <= self.station_event_s.get(key, -math.inf) and abs(now - e.time) > FRESH_S:
                continue  # an old one after a newer one: a backlog sent again
            seen.append((e.time, e.state))
            self.station_event_s[key] = max(e.time, self.station_event_s.get(key, -math.inf))
            current = self.station_alarms.get(key)
            if e.state == "raised" and current is None:
                alarm = Alarm(alarm_id(key, e.time), key, "station", e.severity, "raised", e.time, e.message,
                              STATION_RULE_CHECKS.get(e.alarm, "the station's log (journalctl -u fluxedge-station)"),
                              site=v.site, value=e.value, last_values={} if e.value is None else {"VALUE": e.value})
                self.station_alarms[key] = alarm
                out.append(self._raised(alarm, e.time, now, flapping=False))
            elif e.state == "cleared" and current is not None:
                del self.station_alarms[key]
                out.append(self._cleared(current, e.time))
        return out

    # --- commands ---

    def find(self, prefix: str) -> Alarm | None:
        matches = [a for a in self.active() if a.id.startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    def acknowledge(self, ident: str, by: str, now: float) -> Transition | None:
        alarm = self.find(ident)
        if alarm is None or alarm.state != "raised":
            return None
        alarm.state, alarm.acked_s, alarm.acked_by = "acknowledged", now, by
        return Transition("acknowledged", replace(alarm), now, notify=False)

    def silence(self, silence: Silence) -> None:
        self.silences[silence.station] = silence

    def silenced(self, station: str, now: float) -> bool:
        s = self.silences.get(station)
        return s is not None and now < s.until_s

    def restore(self, alarm: Alarm) -> None:
        """An active alarm from the retained state (a restart or a failover): kept, not re-fired."""
        if not alarm.active:
            return
        if alarm.origin == "station":
            self.station_alarms[alarm.key] = alarm
            self.station_events_seen.setdefault(alarm.key, collections.deque(maxlen=64)).append(
                (alarm.raised_s, "raised"))
            self.station_event_s[alarm.key] = max(self.station_event_s.get(alarm.key, -math.inf), alarm.raised_s)
        else:
            state = self.states.setdefault(alarm.key, _RuleState())
            state.alarm = alarm
            state.bad_since = alarm.raised_s

    def forget(self, station: str, rule: str, source: str) -> None:
        """The leader cleared this alarm (its retained state was deleted)."""
        key = AlarmKey(rule, station, source)
        self.station_alarms.pop(key, None)
        state = self.states.get(key)
        if state is not None:
            state.alarm = None

    def active(self) -> list[Alarm]:
        fleet = [s.alarm for s in self.states.values() if s.alarm is not None]
        return sorted(fleet + list(self.station_alarms.values()), key=lambda a: (a.raised_s, a.id))

    # --- evaluation ---

    def readings(self, rule: FleetRule, station: str, v: StationView, now: float) -> list[Reading]:
        t = rule.type
        if t == "offline":
            since = v.last_seen_s if v.last_seen_s is not None else v.first_seen_s
            silent = max(0.0, now - (since or now))
            if v.online is False:
                return [Reading("station", silent, f"offline (the broker published its last will); last message "
                                                   f"{silent:.0f} s ago", {"SILENT_S": silent}, forced_bad=True)]
            return [Reading("station", silent, f"no message from the station for {silent:.0f} s",
                            {"SILENT_S": silent})]
        if t == "no_flux":
            if v.online is False:
                return []  # the offline rule speaks for it
            last = v.last_flux_end_s if v.last_flux_end_s is not None else v.first_seen_s
            periods = (now - (last or now)) / v.period_s
            return [Reading("station", periods, f"no flux for {periods:.1f} averaging periods "
                                                f"({v.period_s / 60:.0f} min each)", {"PERIODS": periods})]
        if t == "qc_share":
            recent = [q for end, q in v.qc.items() if end > now - rule.window_s]
            if len(recent) < rule.min_points:
                return [Reading("station", None, "", {})]
            share = 100.0 * sum(q >= 2 for q in recent) / len(recent)
            return [Reading("station", share, f"{share:.0f} % of the last {len(recent)} flux periods have QC flag 2",
                            {"QC2_PCT": share, "PERIODS": float(len(recent))})]
        if t == "signal_falling":
            return [self._signal(rule, v, source, now) for source in v.signal_hours
                    if rule.watches(station, v.families.get(source))]
        if t in ("spool_backlog", "disk_low"):
            metric = "SPOOL_OLDEST_S" if t == "spool_backlog" else "DISK_FREE_MB"
            value = v.last_values.get("station", {}).get(metric)
            if value is None:
                return [Reading("station", None, "", {})]
            what = (f"the oldest unsent message in the station's spool is {value / 60:.0f} min old"
                    if t == "spool_backlog" else f"{value:.0f} MB free on the station's data disk")
            shown = {metric: value}
            if t == "spool_backlog":
                shown["SPOOL_DEPTH"] = v.last_values["station"].get("SPOOL_DEPTH")
            return [Reading("station", value, what, shown)]
        if t == "clock_offset":
            recent = [d for at, d in v.clock if at > now - rule.window_s]
            if len(recent) < rule.min_points:
                return [Reading("station", None, "", {})]
            # record time - arrival = offset - latency; the freshest message has the least latency
            offset = max(recent)
            return [Reading("station", abs(offset), f"the station's clock is {abs(offset):.1f} s "
                                                    f"{'ahead of' if offset > 0 else 'behind'} the collector's",
                            {"CLOCK_OFFSET_S": offset})]
        raise ValueError(f"rule type {t!r}")

    def _signal(self, rule: FleetRule, v: StationView, source: str, now: float) -> Reading:
        hours = v.signal_hours[source]
        first = int((now - rule.window_s) // HOUR_S)
        cells = sorted((h, s / n) for h, (s, n) in hours.items() if h >= first and n)
        if not cells:
            return Reading(source, None, "", {})
        latest = cells[-1][1]
        slope_per_day = 0.0
        if len(cells) >= max(2, rule.min_points):
            x = np.array([h for h, _ in cells], float) / 24.0
            y = np.array([m for _, m in cells])
            slope_per_day = float(np.polyfit(x - x.mean(), y, 1)[0])
        family = v.families.get(source, "analyser")
        name = "RSSI" if family == "li7700" else "signal strength"
        values = {"SIGNAL_MEAN": latest, "SIGNAL_SLOPE_PER_DAY": slope_per_day}
        falling = rule.decline_per_day > 0 and slope_per_day < -rule.decline_per_day and latest < rule.watch_below
        what = f"{family} {source}: {name} {latest:.0f} %"
        if slope_per_day < 0:
            what += f", falling {-slope_per_day:.1f} %/day over {len(cells) / 24:.1f} days"
        return Reading(source, latest, what, values, forced_bad=falling)

    def evaluate(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for station, v in list(self.stations.items()):
            for rule in self.rules:
                if rule.stations and station not in rule.stations:
                    continue
                for reading in self.readings(rule, station, v, now):
                    out += self._step(rule, station, v, reading, now)
        out += self.reminders(now)
        return out

    def _step(self, rule: FleetRule, station: str, v: StationView, r: Reading, now: float) -> list[Transition]:
        key = AlarmKey(rule.name, station, r.source)
        state = self.states.setdefault(key, _RuleState())
        if r.value is None:
            return []
        bad = r.forced_bad or is_bad(rule, r.value)
        good = not r.forced_bad and is_good(rule, r.value)
        if state.alarm is not None:
            state.alarm.value, state.alarm.last_values = r.value, r.last_values
        if bad:
            state.good_since = None
            if state.bad_since is None:
                state.bad_since = now
            if state.alarm is None and now - state.bad_since >= rule.raise_after_s:
                while state.raises and state.raises[0] < now - rule.flap_window_s:
                    state.raises.popleft()
                state.raises.append(now)
                flapping = len(state.raises) >= rule.flap_max
                alarm = Alarm(alarm_id(key, state.bad_since), key, "fleet", rule.severity, "raised", state.bad_since,
                              r.what, rule.check, site=v.site, value=r.value, last_values=r.last_values,
                              flapping=flapping)
                state.alarm = alarm
                return [self._raised(alarm, now, now, flapping)]
        elif good:
            state.bad_since = None
            if state.good_since is None:
                state.good_since = now
            if state.alarm is not None:
                hold = max(rule.clear_after_s, rule.flap_window_s if state.alarm.flapping else 0.0)
                if now - state.good_since >= hold:
                    alarm, state.alarm = state.alarm, None
                    return [self._cleared(alarm, now)]
        return []

    def _raised(self, alarm: Alarm, time_s: float, now: float, flapping: bool) -> Transition:
        notify = not flapping and not self.silenced(alarm.key.station, now)
        if notify:
            alarm.notified_s = now
        return Transition("raised", replace(alarm), time_s, notify)

    def _cleared(self, alarm: Alarm, time_s: float) -> Transition:
        alarm.state, alarm.cleared_s = "cleared", time_s
        # one "cleared" for every alarm people were told of
        return Transition("cleared", replace(alarm), time_s, notify=alarm.notified_s is not None)

    def reminders(self, now: float) -> list[Transition]:
        """Reminders of raised, unacknowledged alarms every ``renotify_s``; the first notification
        of an alarm raised during a silence once the silence is over."""
        renotify = {r.name: r.renotify_s for r in self.rules}
        out = []
        for alarm in self.active():
            if alarm.state != "raised" or self.silenced(alarm.key.station, now):
                continue
            if alarm.notified_s is None:
                if not alarm.flapping:
                    alarm.notified_s = now
                    out.append(Transition("raised", replace(alarm), now, notify=True))
                continue
            every = renotify.get(alarm.key.rule, 4 * HOUR_S)
            if every and now - alarm.notified_s >= every:
                alarm.notified_s = now
                out.append(Transition("reminder", replace(alarm), now, notify=True))
        return out
