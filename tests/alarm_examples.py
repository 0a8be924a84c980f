"""Notification texts of every rule, from the real tracker and renderer (README and its test)."""
from dataclasses import replace

from collector.alarms.notify import render
from collector.alarms.rules import effective_rules
from collector.alarms.service import notice_for
from collector.alarms.tracker import FleetTracker
from fluxedge.common.messages import AlarmEvent, DiagRecord, FluxRecord

T0 = 1_796_630_400.0  # 2026-12-07 08:00 UTC


def examples():
    out = {}
    rules = {r.name: replace(r, raise_after_s=0.0, min_points=1) for r in effective_rules()}
    def tracker(*names):
        return FleetTracker([rules[n] for n in names])
    # offline
    tr = tracker("station_offline")
    tr.on_status("mangrove-01", "online", T0, site="mangrove-01", families={"sonic": "csat3", "irga": "li7500"})
    tr.on_status("mangrove-01", "offline", T0 + 600)
    (t,) = tr.evaluate(T0 + 672)
    out["station_offline"] = t
    tr.on_status("mangrove-01", "online", T0 + 4000)
    (c,) = tr.evaluate(T0 + 4001)
    out["station_offline cleared"] = c
    # no flux
    tr = tracker("no_flux")
    tr.on_status("mangrove-01", "online", T0, site="mangrove-01")
    tr.on_flux(FluxRecord("mangrove-01", 1, T0 - 1800, T0, {"FC": -3.1}), T0 + 2)
    (t,) = tr.evaluate(T0 + 3.2 * 1800)
    out["no_flux"] = t
    # qc
    tr = tracker("qc_flag2_share")
    tr.on_status("mangrove-01", "online", T0, site="mangrove-01")
    for i in range(48):
        end = T0 + 1800 * (i + 1)
        tr.on_flux(FluxRecord("mangrove-01", i, end - 1800, end, {"FC_SSITC_TEST": 2.0 if i % 3 else 0.0}), end)
    (t,) = tr.evaluate(T0 + 48 * 1800 + 5)
    out["qc_flag2_share"] = t
    # signals
    for rule, fam, src, first, rate in (("li7500_window_dirty", "li7500", "irga", 95.0, -3.0),
                                        ("li7200_window_dirty", "li7200", "irga", 90.0, -3.5),
                                        ("li7700_mirror_dirty", "li7700", "ch4", 45.0, -8.0)):
        tr = tracker(rule)
        tr.on_status("mangrove-01", "online", T0, site="mangrove-01", families={src: fam})
        t = T0
        while t < T0 + 4 * 86400:
            tr.on_diag("mangrove-01", [DiagRecord(t, src, {"SIGNAL_MEAN": first + rate * (t - T0) / 86400})], t + 1)
            t += 600
        (x,) = tr.evaluate(t)
        out[rule] = x
    # station metrics
    for rule, values, arrival in (("spool_backlog", {"SPOOL_OLDEST_S": 5400.0, "SPOOL_DEPTH": 412.0}, 0.4),
                                  ("disk_low", {"DISK_FREE_MB": 640.0}, 0.4),
                                  ("clock_offset", {"NTP_SYNCED": 0.0}, -47.3)):
        tr = tracker(rule)
        tr.on_status("mangrove-01", "online", T0, site="mangrove-01")
        tr.on_diag("mangrove-01", [DiagRecord(T0 + 60, "station", values)], T0 + 60 - arrival)
        (x,) = tr.evaluate(T0 + 61)
        out[rule] = x
    # a station alarm
    tr = tracker()
    tr.on_status("mangrove-01", "online", T0, site="mangrove-01")
    (x,) = tr.on_station_alarm("mangrove-01", [AlarmEvent(T0 + 100, "instrument_silent", "irga", "raised", "critical",
                                                          "no data from irga for 31 s", 31.0)], T0 + 101)
    out["instrument_silent (the station's own)"] = x
    return {k: render(replace(notice_for(t), time_s=t.time_s + (0 if "cleared" in k else 300))) for k, t in out.items()}


def markdown() -> str:
    return "\n".join(f"**{k}**\n\n```\n{title}\n\n{body}\n```\n" for k, (title, body) in examples().items())


if __name__ == "__main__":
    for k, (title, body) in examples().items():
        print(f"**{k}**\n\n```\n{title}\n\n{body}\n```\n")
