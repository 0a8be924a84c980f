"""Fleet rules on the collector (issue 16): each rule type raises on its condition after its
duration, clears with hysteresis, suppresses flapping, reminds, and respects silences."""

from __future__ import annotations

from dataclasses import replace

import pytest

from collector.alarms.model import Alarm, Silence
from collector.alarms.rules import DEFAULT_RULES, FleetRuleConfig, effective_rules
from collector.alarms.tracker import FleetTracker
from firmware_bridge.families import FAMILIES
from fluxedge.common.configschema import ConfigError, build
from fluxedge.common.messages import INSTRUMENT_FAMILIES, AlarmEvent, DiagRecord, FluxRecord

T0 = 1_800_000_000.0


def rule(name, **changes):
    (r,) = [r for r in DEFAULT_RULES if r.name == name]
    return replace(r, **changes)


def kinds(transitions):
    return [(t.kind, t.alarm.key.rule, t.alarm.key.source, t.notify) for t in transitions]


def test_instrument_families_of_the_contract_are_the_bridges():
    assert tuple(FAMILIES) == INSTRUMENT_FAMILIES


def test_offline_by_last_will_raises_after_its_delay_and_clears_when_back():
    tr = FleetTracker([rule("station_offline")])
    tr.on_status("m1", "online", T0, site="ID-Mgr", families={"irga": "li7500"})
    assert tr.evaluate(T0 + 10) == []
    tr.on_status("m1", "offline", T0 + 20)
    assert tr.evaluate(T0 + 21) == [] and tr.evaluate(T0 + 50) == []  # 60 s before raising
    (t,) = tr.evaluate(T0 + 81)
    assert (t.kind, t.notify, t.alarm.severity, t.alarm.site) == ("raised", True, "critical", "ID-Mgr")
    assert "last will" in t.alarm.what and t.alarm.raised_s == T0 + 21
    assert tr.evaluate(T0 + 200) == []  # raised once
    tr.on_status("m1", "online", T0 + 300)
    (c,) = tr.evaluate(T0 + 301)
    assert (c.kind, c.notify, c.alarm.id) == ("cleared", True, t.alarm.id)


def test_offline_by_silence_without_a_last_will():
    tr = FleetTracker([rule("station_offline", raise_after_s=0.0)])
    tr.on_status("m1", "online", T0)
    tr.seen("m1", T0 + 100)
    assert tr.evaluate(T0 + 399) == []
    (t,) = tr.evaluate(T0 + 401)
    assert "no message" in t.alarm.what


def flux(station, end, qc=0.0):
    return FluxRecord(station, 1, end - 1800, end, {"FC": -5.0, "FC_SSITC_TEST": qc, "H_SSITC_TEST": 0.0})


def test_no_flux_for_three_periods_then_a_flux_clears_it():
    tr = FleetTracker([rule("no_flux")])
    tr.on_status("m1", "online", T0)
    tr.on_flux(flux("m1", T0), T0 + 5)
    assert tr.evaluate(T0 + 3 * 1800) == []
    (t,) = tr.evaluate(T0 + 3 * 1800 + 60)
    assert t.kind == "raised" and t.alarm.last_values["PERIODS"] > 3
    tr.on_flux(flux("m1", T0 + 4 * 1800), T0 + 4 * 1800 + 5)
    (c,) = tr.evaluate(T0 + 4 * 1800 + 6)
    assert c.kind == "cleared"


def test_qc_flag2_share_with_hysteresis():
    tr = FleetTracker([rule("qc_flag2_share", window_s=10 * 1800.0, min_points=4)])
    t = T0
    for i in range(10):
        t += 1800
        tr.on_flux(flux("m1", t, qc=2.0 if i % 10 < 6 else 0.0), t)
    (raised,) = tr.evaluate(t)
    assert raised.alarm.value == pytest.approx(60.0)
    for end in (t - 1800, t):  # periods sent again (a station restarted before keep_acked_s): counted once
        tr.on_flux(flux("m1", end, qc=0.0), t + 1)
    assert tr.evaluate(t + 1) == [] and tr.active()[0].value == pytest.approx(60.0)
    for _ in range(2):  # 40 % > clear_at 30 %: stays raised
        t += 1800
        tr.on_flux(flux("m1", t, qc=0.0), t)
    assert tr.evaluate(t) == [] and tr.active()
    for _ in range(2):
        t += 1800
        tr.on_flux(flux("m1", t, qc=0.0), t)
    (cleared,) = tr.evaluate(t)
    assert cleared.kind == "cleared" and cleared.alarm.value <= 30


def signal_days(tr, station, source, start, days, first, per_day, every_s=600.0):
    t = start
    while t < start + days * 86400:
        value = first + per_day * (t - start) / 86400
        tr.on_diag(station, [DiagRecord(t, source, {"SIGNAL_MEAN": value})], t + 1)
        t += every_s
    return t


def test_signal_falling_over_days_raises_clean_the_window_per_family():
    tr = FleetTracker(effective_rules())
    tr.on_status("m1", "online", T0, families={"irga": "li7500", "ch4": "li7700"})
    t = signal_days(tr, "m1", "irga", T0, 4, 99.0, -2.5)  # 99 -> 89 %: above 80, but falling 2.5 %/day
    got = [x for x in tr.evaluate(t) if x.alarm.key.rule.endswith("dirty")]
    assert kinds(got) == []  # not yet for the raise delay
    got = [x for x in tr.evaluate(t + 3601) if x.alarm.key.rule.endswith("dirty")]
    assert kinds(got) == [("raised", "li7500_window_dirty", "irga", True)]
    assert "clean the LI-7500" in got[0].alarm.check and "falling 2.5 %/day" in got[0].alarm.what
    # the LI-7700 rule does not watch an LI-7500
    assert not [a for a in tr.active() if a.key.rule == "li7700_mirror_dirty"]


def test_signal_slowly_drifting_while_high_is_no_alarm():
    tr = FleetTracker(effective_rules())
    tr.on_status("m1", "online", T0, families={"irga": "li7500"})
    t = signal_days(tr, "m1", "irga", T0, 4, 100.0, -0.5)
    assert [x for x in tr.evaluate(t + 7200) if x.alarm.key.rule.endswith("dirty")] == []


def test_li7700_rssi_below_threshold():
    tr = FleetTracker(effective_rules())
    tr.on_status("m1", "online", T0, families={"ch4": "li7700"})
    t = signal_days(tr, "m1", "ch4", T0, 1, 15.0, 0.0)
    got = [x for x in tr.evaluate(t) if x.alarm.key.rule.endswith("dirty")]
    got += [x for x in tr.evaluate(t + 3601) if x.alarm.key.rule.endswith("dirty")]
    assert kinds(got) == [("raised", "li7700_mirror_dirty", "ch4", True)]
    assert "mirror" in got[0].alarm.check and "RSSI 15 %" in got[0].alarm.what


def diag_station(tr, t, arrival, **values):
    tr.on_diag("m1", [DiagRecord(t, "station", values)], arrival)


def test_spool_backlog_disk_and_clock_offset():
    rules = [rule("spool_backlog", raise_after_s=0.0), rule("disk_low", raise_after_s=0.0),
             rule("clock_offset", raise_after_s=0.0, min_points=2)]
    tr = FleetTracker(rules)
    diag_station(tr, T0 + 60, T0 + 60.5, SPOOL_OLDEST_S=100.0, DISK_FREE_MB=5000.0)
    diag_station(tr, T0 + 120, T0 + 120.4, SPOOL_OLDEST_S=100.0, DISK_FREE_MB=5000.0)
    assert tr.evaluate(T0 + 121) == []
    diag_station(tr, T0 + 180 + 30, T0 + 180.3, SPOOL_OLDEST_S=4000.0, DISK_FREE_MB=800.0)
    got = {t.alarm.key.rule: t for t in tr.evaluate(T0 + 181)}
    assert set(got) == {"spool_backlog", "disk_low", "clock_offset"}
    assert got["clock_offset"].alarm.last_values["CLOCK_OFFSET_S"] == pytest.approx(29.7)
    assert "ahead of" in got["clock_offset"].alarm.what


def test_a_redelivered_old_diag_record_does_not_bring_back_an_old_value():
    tr = FleetTracker([rule("disk_low", raise_after_s=0.0, clear_after_s=0.0)])
    diag_station(tr, T0 + 60, T0 + 60, DISK_FREE_MB=500.0)
    assert [x.kind for x in tr.evaluate(T0 + 61)] == ["raised"]
    diag_station(tr, T0 + 120, T0 + 120, DISK_FREE_MB=5000.0)
    assert [x.kind for x in tr.evaluate(T0 + 121)] == ["cleared"]
    diag_station(tr, T0 + 60, T0 + 300, DISK_FREE_MB=500.0)  # the spool sends it again after a restart
    assert tr.evaluate(T0 + 301) == []
    # a station whose clock ran 10 min fast, put right: its records step back, and count
    diag_station(tr, T0 + 1000, T0 + 400, DISK_FREE_MB=5000.0)
    diag_station(tr, T0 + 460, T0 + 460, DISK_FREE_MB=500.0)
    assert [x.kind for x in tr.evaluate(T0 + 461)] == ["raised"]


def test_flapping_is_suppressed_and_clears_only_after_a_quiet_window():
    tr = FleetTracker([rule("disk_low", raise_after_s=0.0, clear_after_s=0.0, flap_max=3, flap_window_s=3600.0)])
    t, sent = T0, []
    for _ in range(4):
        t += 60
        diag_station(tr, t, t, DISK_FREE_MB=500.0)
        sent += tr.evaluate(t)
        t += 60
        diag_station(tr, t, t, DISK_FREE_MB=5000.0)
        sent += tr.evaluate(t)
    raised = [x for x in sent if x.kind == "raised"]
    assert [x.notify for x in raised] == [True, True, False]  # the third raise is flapping: not told
    assert raised[-1].alarm.flapping
    assert tr.active() and tr.active()[0].flapping  # held raised: clears after an hour of good
    t += 3601
    diag_station(tr, t, t, DISK_FREE_MB=5000.0)
    (cleared,) = tr.evaluate(t)
    assert cleared.kind == "cleared" and cleared.notify is False  # nobody was told of this one


def test_reminders_until_acknowledged_and_silence_holds_notifications():
    tr = FleetTracker([rule("disk_low", raise_after_s=0.0, renotify_s=600.0)])
    diag_station(tr, T0, T0, DISK_FREE_MB=500.0)
    (raised,) = tr.evaluate(T0)
    assert kinds(tr.evaluate(T0 + 601)) == [("reminder", "disk_low", "station", True)]
    ack = tr.acknowledge(raised.alarm.id[:5], "tech", T0 + 700)
    assert ack.alarm.state == "acknowledged" and ack.alarm.acked_by == "tech"
    assert tr.evaluate(T0 + 2000) == []
    # a second station raised during its maintenance window: told once the window is over
    tr.silence(Silence("m2", T0 + 5000, by="tech"))
    tr.on_diag("m2", [DiagRecord(T0 + 3000, "station", {"DISK_FREE_MB": 10.0})], T0 + 3000)
    (quiet,) = tr.evaluate(T0 + 3000)
    assert quiet.notify is False
    assert kinds(tr.evaluate(T0 + 5001)) == [("raised", "disk_low", "station", True)]


def test_station_alarms_share_the_model_and_a_restored_alarm_does_not_refire():
    tr = FleetTracker([rule("disk_low", raise_after_s=0.0)])
    ev = AlarmEvent(T0, "instrument_silent", "irga", "raised", "critical", "no data from irga for 31 s", 31.0)
    (t,) = tr.on_station_alarm("m1", [ev], T0 + 1)
    assert (t.kind, t.alarm.origin, t.notify) == ("raised", "station", True)
    assert tr.on_station_alarm("m1", [ev], T0 + 2) == []  # a redelivery
    cleared = replace(ev, time=T0 + 50, state="cleared")
    (c,) = tr.on_station_alarm("m1", [cleared], T0 + 51)
    assert c.kind == "cleared" and c.alarm.id == t.alarm.id
    # the spool delivers at least once: the raise and its clearing again are no new alarm
    assert tr.on_station_alarm("m1", [ev, cleared], T0 + 60) == []
    assert tr.on_station_alarm("m1", [ev, cleared], T0 + 1000) == []  # and again, long after
    later = replace(ev, time=T0 + 1100 + 600)  # a station clock 10 min fast
    assert [x.kind for x in tr.on_station_alarm("m1", [later], T0 + 1101)] == ["raised"]
    # put right: its next event steps back, and counts
    back = replace(ev, time=T0 + 1130, state="cleared")
    assert [x.kind for x in tr.on_station_alarm("m1", [back], T0 + 1131)] == ["cleared"]
    # restart: the retained state comes back, nothing fires again
    diag_station(tr, T0, T0, DISK_FREE_MB=500.0)
    (raised,) = tr.evaluate(T0)
    fresh = FleetTracker([rule("disk_low", raise_after_s=0.0)])
    fresh.restore(Alarm.from_json(raised.alarm.to_json()))
    diag_station(fresh, T0 + 60, T0 + 60, DISK_FREE_MB=500.0)
    assert fresh.evaluate(T0 + 60) == [] and fresh.active()[0].id == raised.alarm.id


@pytest.mark.parametrize(("raw", "key", "words"), [
    ({"name": "nonsense"}, "type", "not a built-in rule"),
    ({"name": "x", "type": "offline"}, "threshold", "required"),
    ({"name": "li7500_window_dirty", "clear_at": 70.0}, "clear_at", "hysteresis"),
    ({"name": "disk_low", "families": ["li7501"]}, "families", "unknown instrument family"),
    ({"name": "station_offline", "type": "disk_low"}, "type", "is of type offline"),
])
def test_rule_config_errors_name_the_key(raw, key, words):
    with pytest.raises(ConfigError) as exc:
        build(FleetRuleConfig, raw, "collector.toml", "alarms.rule[0].")
    text = str(exc.value)
    assert f"alarms.rule[0].{key}" in text and words in text, text


def test_overrides_and_new_rules():
    rules = effective_rules([build(FleetRuleConfig, {"name": "station_offline", "threshold": 120.0}, "c.toml"),
                             build(FleetRuleConfig, {"name": "no_flux", "enabled": False}, "c.toml"),
                             build(FleetRuleConfig, {"name": "backlog_fast", "type": "spool_backlog",
                                                     "threshold": 600.0, "clear_at": 60.0,
                                                     "stations": ["m1"]}, "c.toml")])
    by = {r.name: r for r in rules}
    assert by["station_offline"].threshold == 120.0 and by["station_offline"].raise_after_s == 60.0
    assert "no_flux" not in by and by["backlog_fast"].stations == ("m1",)


BASE_TOML = '[mqtt]\nport = 1883\n[influxdb]\nurl = "http://127.0.0.1:8086"\ndatabase = "x"\n'


@pytest.mark.parametrize(("extra", "key", "words"), [
    ('[alarms]\n[[alarms.rule]]\nname = "nonsense"\n', "alarms.rule[0].type", "not a built-in rule"),
    ('[alarms]\n[[alarms.notify]]\nname = "a"\nurls = ["json://127.0.0.1:9/x"]\nrules = ["no_such"]\n',
     "alarms.notify[0].rules", "no rule named 'no_such'"),
    ('[alarms]\n[[alarms.notify]]\nname = "a"\nurls = ["nonsense://x"]\n', "alarms.notify[0].urls", "apprise"),
    ('[alarms]\n[[alarms.rule]]\nname = "disk_low"\n[[alarms.rule]]\nname = "disk_low"\n', "alarms.rule[1].name",
     "configured twice"),
])
def test_collector_alarm_config_errors_name_file_and_key(tmp_path, extra, key, words):
    from collector.config import load

    path = tmp_path / "collector.toml"
    path.write_text(BASE_TOML + extra)
    with pytest.raises(ConfigError) as exc:
        load(path)
    text = str(exc.value)
    assert str(path) in text and key in text and words in text, text


def test_an_mqtt_account_needs_a_second_one_for_the_alarm_service(tmp_path):
    from collector.config import alarms_mqtt, load, operator_mqtt

    path = tmp_path / "collector.toml"
    path.write_text(BASE_TOML.replace("port = 1883\n", 'port = 1883\nusername = "collector"\n'))
    with pytest.raises(ConfigError, match=r"alarms\.username"):
        load(path)
    path.write_text(BASE_TOML.replace("port = 1883\n", 'port = 1883\nusername = "collector"\n')
                    + '[alarms]\nusername = "collector-alarms"\npassword = "pw"\n')
    cfg = load(path)
    assert alarms_mqtt(cfg).username == "collector-alarms" and operator_mqtt(cfg).username == "collector-alarms"
    assert cfg.mqtt.username == "collector"
