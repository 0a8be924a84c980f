"""Alarm notifications through apprise, against real local servers: an SMTP server (aiosmtpd) and
JSON webhooks (http.server), one that fails before it accepts and a port where nobody listens."""

import calendar
import email
import email.policy
import logging
import time

import pytest
from aiosmtpd.controller import Controller
from notify_servers import Hook, Mailbox, free_port

from collector.alarms.notify import DeliveryRecord, Notice, Notifier, NotifyRoute, check_url, render
from fluxedge.common.configschema import ConfigError, build

T_RAISED = calendar.timegm((2026, 12, 7, 10, 14, 0))  # 2026-12-07 10:14:00 UTC


def notice(**changes) -> Notice:
    values = dict(kind="raised", alarm_id="3f9a1c2e", rule="signal_falling", severity="warning",
                  station="mangrove-01", site="US-Mg1", source="irga", since_s=T_RAISED,
                  time_s=T_RAISED + 2 * 3600 + 5 * 60 + 30,
                  what="signal strength 71 % and falling 2.1 %/day over 5 days",
                  check="clean the LI-7500 window (salt, dust, bird droppings)",
                  last_values={"SIGNAL_MEAN": 71.2, "AGC": None, "SIGNAL_MIN": 65.0})
    values.update(changes)
    return Notice(**values)


@pytest.fixture
def hook():
    servers = []

    def make(statuses=(), delay_s=0.0) -> Hook:
        servers.append(Hook(statuses, delay_s))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


def route(name="ops", urls=(), **changes) -> NotifyRoute:
    return NotifyRoute(name=name, urls=list(urls), **changes)


# --- render --------------------------------------------------------------------------------------------

def test_render_raised():
    assert render(notice()) == ("[WARNING] mangrove-01 (irga): signal falling", "\n".join([
        "Site: US-Mg1",
        "Station: mangrove-01",
        "Instrument: irga",
        "What: signal strength 71 % and falling 2.1 %/day over 5 days",
        "Since: 2026-12-07 10:14 UTC (for 2 h 05 min)",
        "Last values: AGC = missing, SIGNAL_MEAN = 71.2, SIGNAL_MIN = 65",
        "Check: clean the LI-7500 window (salt, dust, bird droppings)",
        "Alarm id: 3f9a1c2e (warning, fleet rule signal_falling)",
        "ack: fluxedge alarms ack 3f9a1c2e -c collector.toml",
    ]))


def test_render_cleared():
    cleared = notice(kind="cleared", alarm_id="7b2e90d4", rule="station_offline", severity="critical",
                     source="station", time_s=T_RAISED + 2 * 3600 + 5 * 60 + 59, last_values={},
                     what="messages arrive again", check="nothing to do; the station's log tells why it went silent")
    assert render(cleared) == ("[CLEARED] mangrove-01: station offline", "\n".join([
        "Site: US-Mg1",
        "Station: mangrove-01",
        "Instrument: none (the station as a whole)",
        "What: messages arrive again",
        "Since: 2026-12-07 10:14 UTC",
        "Cleared at 2026-12-07 12:19 UTC after 2 h 05 min",
        "Check: nothing to do; the station's log tells why it went silent",
        "Alarm id: 7b2e90d4 (critical, fleet rule station_offline)",
    ]))


def test_render_reminder_from_the_station_after_a_failover():
    reminder = notice(kind="reminder", alarm_id="c0ffee12", rule="instrument_silent", severity="critical",
                      station="tower-7", site=None, source="sonic", origin="station", repeat=True,
                      since_s=T_RAISED - 12 * 3600 - 14 * 60, time_s=T_RAISED + 86400,
                      what="no frames from the CSAT3\nfor 36 h", check="check the sonic's power and RS-485 cable",
                      last_values={"FRAMES": 0})
    assert render(reminder) == ("[REMINDER] tower-7 (sonic): instrument silent", "\n".join([
        "Possibly a repeat: the collector failed over and may have sent this already.",
        "Site: unknown",
        "Station: tower-7",
        "Instrument: sonic",
        "What: no frames from the CSAT3 for 36 h",
        "Since: 2026-12-06 22:00 UTC (for 1 d 12 h)",
        "Last values: FRAMES = 0",
        "Check: check the sonic's power and RS-485 cable",
        "Alarm id: c0ffee12 (critical, station rule instrument_silent)",
        "ack: fluxedge alarms ack c0ffee12 -c collector.toml",
    ]))


def test_a_notice_of_unknown_kind_or_severity_is_refused():
    with pytest.raises(ValueError, match="kind"):
        notice(kind="resolved")
    with pytest.raises(ValueError, match="severity"):
        notice(severity="fatal")


# --- real servers ----------------------------------------------------------------------------------------

def test_an_email_reaches_a_real_smtp_server(smtp):
    port, mailbox = smtp
    url = f"mailto://127.0.0.1:{port}?from=fluxedge@example.org&to=tech@example.org&mode=insecure"
    records = []
    notifier = Notifier([route(urls=[url])], record=records.append, clock=lambda: 1234.5)
    notifier.start()
    assert notifier.submit(notice(severity="critical")) == 1
    assert notifier.wait_idle(20)
    notifier.stop()
    title, body = render(notice(severity="critical"))
    assert records == [DeliveryRecord(alarm_id="3f9a1c2e", route="ops", url_index=0, scheme="mailto", kind="raised",
                                      attempt=1, ok=True, error=None, time_s=1234.5)]
    assert len(mailbox.envelopes) == 1
    envelope = mailbox.envelopes[0]
    assert envelope.mail_from == "fluxedge@example.org"
    assert envelope.rcpt_tos == ["tech@example.org"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"] == title == "[CRITICAL] mangrove-01 (irga): signal falling"
    text = mail.get_body(("plain",)).get_content()
    for line in ("Station: mangrove-01", "What: signal strength 71 % and falling 2.1 %/day over 5 days",
                 "Check: clean the LI-7500 window (salt, dust, bird droppings)",
                 "ack: fluxedge alarms ack 3f9a1c2e -c collector.toml"):
        assert line in text.splitlines()
    assert text.strip().splitlines() == body.splitlines()  # mail lines end in CRLF


def test_a_json_webhook_gets_one_post(hook):
    server = hook()
    notifier = Notifier([route(urls=[f"json://127.0.0.1:{server.port}/hook"])])
    records = notifier.deliver(notice())
    assert [(r.ok, r.attempt, r.scheme, r.url_index) for r in records] == [(True, 1, "json", 0)]
    assert len(server.posts) == 1
    _, path, _, body = server.posts[0]
    title, text = render(notice())
    assert path == "/hook"
    assert (body["title"], body["message"], body["type"]) == (title, text, "warning")
    cleared = notice(kind="cleared")
    notifier.deliver(cleared)
    assert server.posts[-1][3]["type"] == "success"
    assert server.posts[-1][3]["title"] == render(cleared)[0]


def test_a_failing_webhook_is_retried_with_doubling_backoff(hook):
    server = hook(statuses=[500, 500])
    records = []
    notifier = Notifier([route(urls=[f"json://127.0.0.1:{server.port}/hook"])], retry_min_s=0.05,
                        record=records.append)
    returned = notifier.deliver(notice())
    assert returned == records
    assert [(r.attempt, r.ok) for r in records] == [(1, False), (2, False), (3, True)]
    assert all("500" in r.error for r in records[:2]) and records[2].error is None
    assert len(server.accepted()) == 1 and len(server.posts) == 3
    times = [t for t, *_ in server.posts]
    assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095  # 0.05 s, then 0.1 s


def test_an_unreachable_url_fails_every_attempt_and_the_worker_goes_on(hook, caplog):
    good = hook()
    dead = f"json://fluxedge:hunter2secret@127.0.0.1:{free_port()}/hook"
    records = []
    notifier = Notifier([route("dead", [dead]), route("good", [f"json://127.0.0.1:{good.port}/hook"])],
                        attempts=3, retry_min_s=0.01, record=records.append)
    notifier.start()
    with caplog.at_level(logging.WARNING, logger="collector.alarms"):
        assert notifier.submit(notice(alarm_id="aaaa0001")) == 2
        assert notifier.submit(notice(alarm_id="aaaa0002")) == 2
        assert notifier.wait_idle(30)
    notifier.stop()
    failed = [r for r in records if r.route == "dead"]
    assert [(r.alarm_id, r.attempt, r.ok) for r in failed] == [
        ("aaaa0001", 1, False), ("aaaa0001", 2, False), ("aaaa0001", 3, False),
        ("aaaa0002", 1, False), ("aaaa0002", 2, False), ("aaaa0002", 3, False)]
    assert all(r.error and "Connection error" in r.error for r in failed)
    assert [b["title"] for b in good.accepted()] == [render(notice())[0]] * 2
    assert [r.ok for r in records if r.route == "good"] == [True, True]
    assert "notification_failed" in caplog.text and "notification_abandoned" in caplog.text
    assert "hunter2secret" not in caplog.text + "".join(r.error for r in failed)


def test_a_url_in_backoff_holds_back_only_itself(hook):
    good = hook()
    notifier = Notifier([route("dead", [f"json://127.0.0.1:{free_port()}/x"]),
                         route("good", [f"json://127.0.0.1:{good.port}/hook"])], attempts=2, retry_min_s=1.0)
    notifier.start()
    started = time.monotonic()
    notifier.submit(notice(alarm_id="bbbb0001"))
    notifier.submit(notice(alarm_id="bbbb0002"))
    deadline = started + 10
    while len(good.accepted()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(good.accepted()) == 2
    assert time.monotonic() - started < 1.0  # not behind the dead URL's 2 x 1 s of backoff
    assert not notifier.wait_idle(0)
    notifier.stop(timeout_s=0.2)


def test_a_slow_url_holds_back_only_itself(hook):
    """A webhook that takes 2 s to answer (or a mail server apprise throttles to one message per
    5.5 s) does not delay the other URL of the same route."""
    slow, good = hook(delay_s=2.0), hook()
    notifier = Notifier([route("both", [f"json://127.0.0.1:{slow.port}/hook", f"json://127.0.0.1:{good.port}/hook"])])
    notifier.start()
    started = time.monotonic()
    notifier.submit(notice(alarm_id="cccc0001"))
    notifier.submit(notice(alarm_id="cccc0002"))
    while len(good.accepted()) < 2 and time.monotonic() < started + 10:
        time.sleep(0.01)
    assert len(good.accepted()) == 2 and time.monotonic() - started < 1.0
    assert notifier.wait_idle(10) and [p["title"] for p in slow.accepted()] == [p["title"] for p in good.accepted()]
    notifier.stop(timeout_s=1)


def test_stop_gives_up_within_its_timeout(caplog):
    notifier = Notifier([route(urls=[f"json://127.0.0.1:{free_port()}/x"])], retry_min_s=30, retry_max_s=60)
    notifier.start()
    notifier.submit(notice())
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="collector.alarms"):
        notifier.stop(timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert "notifications_dropped count=1" in caplog.text
    assert notifier.submit(notice()) == 0


def test_a_failing_record_callback_is_logged_not_raised(hook, caplog):
    server = hook()

    def record(rec: DeliveryRecord) -> None:
        raise OSError("disk full")

    notifier = Notifier([route(urls=[f"json://127.0.0.1:{server.port}/hook"])], record=record)
    with caplog.at_level(logging.ERROR, logger="collector.alarms"):
        assert [r.ok for r in notifier.deliver(notice())] == [True]
    assert "delivery_record_failed" in caplog.text and "disk full" in caplog.text


# --- routing -------------------------------------------------------------------------------------------------

URL = "json://127.0.0.1:9/hook"


def test_routes_filter_by_severity_rule_and_station():
    default = route(urls=[URL])
    assert default.matches(notice(severity="warning")) and default.matches(notice(severity="critical"))
    assert not default.matches(notice(severity="info"))
    only = route(urls=[URL], severities=["critical"], rules=["station_offline"], stations=["mangrove-01"])
    assert only.matches(notice(severity="critical", rule="station_offline"))
    assert not only.matches(notice(severity="warning", rule="station_offline"))
    assert not only.matches(notice(severity="critical", rule="signal_falling"))
    assert not only.matches(notice(severity="critical", rule="station_offline", station="tower-7"))


def test_routes_can_skip_cleared_and_reminder_notices():
    quiet = route(urls=[URL], on_clear=False, reminders=False)
    assert quiet.matches(notice(kind="raised"))
    assert not quiet.matches(notice(kind="cleared")) and not quiet.matches(notice(kind="reminder"))
    loud = route(urls=[URL])
    assert loud.matches(notice(kind="cleared")) and loud.matches(notice(kind="reminder"))


def test_submit_counts_the_routes_matched():
    notifier = Notifier([route("all", [URL], severities=["info", "warning", "critical"]),
                         route("critical", [URL], severities=["critical"]),
                         route("no-reminders", [URL], reminders=False)])
    assert notifier.submit(notice(severity="info")) == 1
    assert notifier.submit(notice(severity="critical")) == 3
    assert notifier.submit(notice(severity="critical", kind="reminder")) == 2
    notifier.stop(timeout_s=0)


# --- validation --------------------------------------------------------------------------------------------

def load_route(table: dict) -> NotifyRoute:
    return build(NotifyRoute, table, "collector.toml", "alarms.notify[0].")


def test_a_route_is_read_from_its_table():
    loaded = load_route({"name": "ops-mail", "urls": [URL], "severities": ["critical"], "on_clear": False})
    assert loaded == NotifyRoute(name="ops-mail", urls=[URL], severities=["critical"], on_clear=False)
    assert loaded.validate() == []


def test_a_url_apprise_does_not_understand_is_named_by_its_index():
    with pytest.raises(ConfigError) as err:
        load_route({"name": "ops", "urls": [URL, "nonsense://x"]})
    assert err.value.key == "alarms.notify[0].urls[1]"
    assert "nonsense://" in err.value.problem
    assert check_url("json://127.0.0.1:8080/hook") is None
    assert "SERVICE://" in check_url("hooks.example.org/x")
    assert route(urls=[URL, URL]).validate() == [("urls[1]", "repeats urls[0]: every message would arrive twice")]


@pytest.mark.parametrize("url", ["mailto://tech:hunter2secret@mail.example.org?mode=bogus",
                                 "wpush://hunter2secretkey"])  # apprise's own message quotes this key
def test_a_problem_never_quotes_a_secret(url):
    problem = check_url(url)
    assert problem and "hunter2secret" not in problem
    problems = route(urls=[URL, url]).validate()
    assert [key for key, _ in problems] == ["urls[1]"]
    assert "hunter2secret" not in problems[0][1]


def test_severities_names_and_empty_url_lists_are_refused():
    with pytest.raises(ConfigError, match="severities: must be a non-empty list of info, warning, critical"):
        load_route({"name": "ops", "urls": [URL], "severities": ["warning", "fatal"]})
    with pytest.raises(ConfigError, match="severities"):
        load_route({"name": "ops", "urls": [URL], "severities": []})
    with pytest.raises(ConfigError, match="name: must be 1 to 64"):
        load_route({"name": "Ops Mail", "urls": [URL]})
    with pytest.raises(ConfigError, match="urls: must list at least one"):
        load_route({"name": "ops", "urls": []})
    assert [key for key, _ in route(urls=[URL], severities=["fatal"]).validate()] == ["severities"]
    with pytest.raises(ValueError, match="severities"):
        Notifier([route(urls=[URL], severities=["fatal"])])
