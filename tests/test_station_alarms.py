"""Alarm rules: duration, hysteresis, each transition exactly once, config overrides and errors."""

from __future__ import annotations

import pytest

from fluxedge.common import messages
from fluxedge.common.configschema import ConfigError, build
from station.health.alarms import DEFAULT_RULES, AlarmEngine, AlarmRuleConfig, Rule, rules_from_config

T0 = 1_790_000_000.0


def feed(engine: AlarmEngine, series: list[tuple[float, float]], source: str = "irga", metric: str = "X"):
    """[(t offset, value)] -> [(t offset, state)] of the transitions."""
    out = []
    for dt, value in series:
        for e in engine.observe(T0 + dt, source, {metric: value}):
            out.append((e.time - T0, e.state))
    return out


def test_raise_needs_the_duration_and_happens_once():
    engine = AlarmEngine([Rule("x_high", "X", above=10, raise_after_s=5)])
    # bad for 4 s, good once (timer restarts), then bad for 5 s: raised at t=10, and only once
    series = [(t, 20.0) for t in range(0, 5)] + [(5, 1.0)] + [(t, 20.0) for t in range(6, 20)]
    assert feed(engine, series) == [(11.0, "raised")]
    assert engine.active() == [("x_high", "irga")]


def test_hysteresis_clears_only_below_the_clear_level_for_its_duration():
    engine = AlarmEngine([Rule("x_high", "X", above=10, clear_at=5, clear_after_s=3)])
    series = [(0, 11.0),  # raised at once (no raise duration)
              (1, 8.0), (2, 7.0), (3, 9.0), (4, 6.0), (5, 9.9),  # between clear level and threshold: held
              (6, 4.0), (7, 4.0), (8, 12.0),  # good for 2 s only, then bad again: timer resets
              (9, 3.0), (10, 3.0), (11, 3.0), (12, 3.0), (13, 2.0)]  # good for 3 s: cleared at t=12
    assert feed(engine, series) == [(0.0, "raised"), (12.0, "cleared")]
    assert engine.active() == []
    # raised again: the clear duration counts from the first good value
    assert feed(engine, [(20, 11.0), (21, 0.0), (23.5, 0.0), (24, 0.0)]) == [(20.0, "raised"), (24.0, "cleared")]


def test_below_rules_and_sources_are_independent():
    engine = AlarmEngine([Rule("signal_low", "S", below=70, clear_at=75)])
    assert feed(engine, [(0, 60.0)], "irga", "S") == [(0.0, "raised")]
    assert feed(engine, [(1, 80.0)], "ch4", "S") == []  # another source: its own state
    assert feed(engine, [(2, 72.0)], "irga", "S") == []  # above 70 but below the clear level 75
    assert feed(engine, [(3, 75.0)], "irga", "S") == [(3.0, "cleared")]


def test_missing_metric_or_nan_changes_nothing():
    engine = AlarmEngine([Rule("x_high", "X", above=10, raise_after_s=2)])
    assert feed(engine, [(0, 20.0), (1, float("nan"))]) == []
    assert engine.observe(T0 + 1.5, "irga", {"OTHER": 1.0}) == []
    assert feed(engine, [(2, 20.0)]) == [(2.0, "raised")]


def test_events_are_contract_records_with_their_original_times():
    rule = next(r for r in DEFAULT_RULES if r.name == "instrument_silent")
    engine = AlarmEngine([rule])
    events = engine.observe(T0 + 31.25, "irga", {"SILENT_S": 31.0})
    assert len(events) == 1
    e = events[0]
    assert (e.alarm, e.source, e.state, e.severity, e.value) == \
        ("instrument_silent", "irga", "raised", "critical", 31.0)
    assert e.message == "no data from irga for 31 s"
    payload = messages.encode_batch("alarm", "tower", events)
    batch = messages.decode("fluxedge", "fluxedge/v1/tower/alarm", payload)
    assert batch.records == [e] and batch.records[0].time == T0 + 31.25
    cleared = engine.observe(T0 + 40, "irga", {"SILENT_S": 0.05})
    assert [(c.state, c.time) for c in cleared] == [("cleared", T0 + 40)]


def load_rules(entries: list[dict]) -> list[Rule]:
    return rules_from_config([build(AlarmRuleConfig, e, "station.toml", f"alarm[{i}].") for i, e in enumerate(entries)])


def test_config_overrides_disables_and_adds_rules():
    rules = {r.name: r for r in load_rules([
        {"name": "instrument_silent", "above": 3.0},
        {"name": "cpu_temperature_high", "enabled": False},
        {"name": "ch4_signal_low", "metric": "SIGNAL_MIN", "below": 20, "raise_after_s": 60, "sources": ["ch4"],
         "severity": "critical"},
    ])}
    assert rules["instrument_silent"].above == 3.0 and rules["instrument_silent"].clear_threshold == 3.0
    assert "cpu_temperature_high" not in rules
    new = rules["ch4_signal_low"]
    assert (new.metric, new.below, new.raise_after_s, new.sources, new.severity) == \
        ("SIGNAL_MIN", 20.0, 60.0, ("ch4",), "critical")
    assert len(rules) == len(DEFAULT_RULES)  # one removed, one added
    engine = AlarmEngine(list(rules.values()))
    assert engine.observe(T0, "irga", {"SIGNAL_MIN": 5.0}) == []  # not a watched source
    assert engine.observe(T0, "ch4", {"SIGNAL_MIN": 5.0}) == []
    assert [e.state for e in engine.observe(T0 + 60, "ch4", {"SIGNAL_MIN": 5.0})] == ["raised"]


@pytest.mark.parametrize("entry, key, words", [
    ({"name": "my_rule", "above": 3}, "alarm[0].metric", "needs metric"),
    ({"name": "my_rule", "metric": "NOPE", "above": 3}, "alarm[0].metric", "unknown metric"),
    ({"name": "my_rule", "metric": "LOAD_1M"}, "alarm[0].above", "needs above or below"),
    ({"name": "instrument_silent", "above": 3, "below": 1}, "alarm[0].below", "not both"),
    ({"name": "instrument_silent", "severity": "fatal"}, "alarm[0].severity", "warning, critical"),
    ({"name": "Bad Name"}, "alarm[0].name", "must match"),
    ({"name": "instrument_silent", "raise_after_s": -1}, "alarm[0].raise_after_s", "must not be negative"),
    ({"name": "instrument_silent", "treshold": 1}, "alarm[0].treshold", "unknown key"),
])
def test_bad_rule_config_names_the_key(entry, key, words):
    with pytest.raises(ConfigError) as err:
        load_rules([entry])
    assert err.value.key == key and words in err.value.problem
    assert str(err.value).startswith("station.toml: " + key) and "\n" not in str(err.value)
