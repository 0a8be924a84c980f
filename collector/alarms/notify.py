"""Alarm notifications through apprise: e-mail, JSON webhooks, Slack, Telegram, DingTalk, WeCom ...

A :class:`Notice` (an alarm raised, cleared or still active) becomes plain text a technician can
act on (:func:`render`) and goes to every :class:`NotifyRoute` (one ``[[alarms.notify]]`` table)
that matches it: each URL of a route on its own, with retries (doubling backoff) and one
:class:`DeliveryRecord` per attempt. :class:`Notifier` queues notices for one worker thread per URL,
so the alarm engine never waits on the network. Each URL has its own queue, delivered in order: a
URL that is slow (a mail server timing out; apprise waits 5.5 s between two messages to one
service, its guard against flooding it) or in backoff (mail server down) holds back only itself,
never the other URLs and routes.

URLs hold secrets (passwords, bot tokens, webhook keys): no problem text, record or log line of
this module quotes a URL or a part of one that may be secret.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apprise

from fluxedge.common.configschema import check
from fluxedge.common.logs import event

log = logging.getLogger("collector.alarms")

SEVERITIES = ("info", "warning", "critical")
KINDS = ("raised", "cleared", "reminder")
ORIGINS = ("fleet", "station")
#: longest failure reason kept in a DeliveryRecord [characters]
MAX_ERROR_CHARS = 300
#: notices waiting for one URL; beyond, new ones are dropped (and logged) rather than memory grown
MAX_QUEUED = 1000
#: how the CLI acknowledges an alarm (named in every message that can still be acknowledged)
ACK_COMMAND = "fluxedge alarms ack {alarm_id} -c collector.toml"

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_URL_IN_TEXT = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://\S*")
#: query keys whose values are addresses or switches, not secrets: kept in problem texts
_PUBLIC_QUERY_KEYS = frozenset({"mode", "format", "method", "from", "to", "cc", "bcc", "reply", "smtp", "name",
                                "overflow", "retry", "wait", "optional", "cto", "rto", "verify", "image"})
_NOTIFY_TYPES = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING,
                 "critical": apprise.NotifyType.FAILURE}


# --- configuration -------------------------------------------------------------------------------

def _route_name(value: str) -> str | None:
    if _NAME.fullmatch(value):
        return None
    return f"must be 1 to 64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit, got {value[:80]!r}"


def _severities(value: list[str]) -> str | None:
    if value and all(s in SEVERITIES for s in value):
        return None
    return f"must be a non-empty list of {', '.join(SEVERITIES)}, got {value!r}"[:300]


def _url_list(value: list[str]) -> str | None:
    return None if value else 'must list at least one apprise URL, e.g. "mailto://..." or "json://host:port/path"'


def _names(what: str) -> Callable[[list[str]], str | None]:
    def fn(value: list[str]) -> str | None:
        for i, name in enumerate(value):
            if not name or any(c.isspace() or not c.isprintable() for c in name):
                return f"entry {i} must be a {what} name without spaces or control characters, got {name[:80]!r}"
        return None
    return fn


@dataclass(frozen=True)
class NotifyRoute:
    """One ``[[alarms.notify]]`` table of collector.toml: who hears of which alarms."""

    #: names the route in delivery records and log lines
    name: str = field(metadata=check(_route_name))
    #: apprise URLs (https://github.com/caronc/apprise/wiki), each delivered and retried on its own
    urls: list[str] = field(metadata=check(_url_list))
    #: severities this route hears of
    severities: list[str] = field(default_factory=lambda: ["warning", "critical"], metadata=check(_severities))
    #: rule names; empty: every rule
    rules: list[str] = field(default_factory=list, metadata=check(_names("rule")))
    #: station names; empty: every station
    stations: list[str] = field(default_factory=list, metadata=check(_names("station")))
    #: send the one "cleared" message too
    on_clear: bool = True
    #: send the re-notifications ("still active") too
    reminders: bool = True

    def validate(self) -> list[tuple[str, str]]:
        """Every problem as (key, problem): the field checks too, for a route built in code."""
        problems = []
        for f in dataclasses.fields(self):
            fn = f.metadata.get("check")
            problem = fn(getattr(self, f.name)) if fn else None
            if problem:
                problems.append((f.name, problem))
        for i, url in enumerate(self.urls):
            problem = check_url(url)
            if problem is None and url in self.urls[:i]:
                problem = f"repeats urls[{self.urls.index(url)}]: every message would arrive twice"
            if problem:
                problems.append((f"urls[{i}]", problem))
        return problems

    def matches(self, notice: Notice) -> bool:
        """Whether this route is told of ``notice``."""
        if (notice.kind == "cleared" and not self.on_clear) or (notice.kind == "reminder" and not self.reminders):
            return False
        return (notice.severity in self.severities and (not self.rules or notice.rule in self.rules)
                and (not self.stations or notice.station in self.stations))


def check_url(url: str) -> str | None:
    """None if apprise accepts ``url``, else a one-line problem that quotes no secret of it."""
    if not isinstance(url, str) or not url:
        return 'must be a non-empty apprise URL, e.g. "mailto://..." or "json://host:port/path"'
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters (one URL per entry)"
    match = _SCHEME.match(url)
    if not match:
        return 'is not an apprise URL: it must start with SERVICE://, e.g. "mailto://", "json://", "tgram://"'
    scheme = match.group(1).lower()
    if scheme not in apprise.NotificationManager():
        return f"{scheme}:// is not a service apprise knows (see https://github.com/caronc/apprise/wiki)"
    plugin, reason = _instantiate(url)
    return None if plugin is not None else f"apprise cannot use this {scheme}:// URL: {reason}"


class _ThreadCapture(logging.Filter):
    """Takes the apprise logger's records of one thread (they would echo the URL, half masked)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[tuple[int, str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.messages.append((record.levelno, record.getMessage()))
        return False


def _instantiate(url: str) -> tuple[Any, str]:
    """apprise's plugin for ``url`` and "", or None and why not (secrets removed)."""
    logger = logging.getLogger(apprise.LOGGER_NAME)
    capture = _ThreadCapture()
    logger.addFilter(capture)
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    except Exception as exc:  # a plugin's constructor refusing its arguments
        plugin, reason = None, str(exc) or type(exc).__name__
    else:
        # the specific warning ("The secure mode specified (x) is invalid.") comes before the
        # generic error ("Could not load E-Mail URL: ...")
        said = sorted(capture.messages, key=lambda m: m[0])
        reason = "; ".join(dict.fromkeys(text for level, text in said if level >= logging.WARNING))
    finally:
        logger.removeFilter(capture)
    if plugin is not None:
        return plugin, ""
    return None, _clean(reason, url) or "apprise gave no reason"


def _secrets(url: str) -> set[str]:
    """The parts of ``url`` that may be secret: user, password, a host that is no host name (a bot
    token), path segments, query values other than addresses and switches."""
    rest = url.split("://", 1)[-1]
    netloc, path, query, fragment = re.fullmatch(r"([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#(.*))?", rest, re.DOTALL).groups()
    userinfo, _, hostport = netloc.rpartition("@")
    found = set(userinfo.split(":", 1)) if userinfo else set()
    if not hostport.startswith("["):  # an IPv6 address is no secret
        host, _, port = hostport.partition(":")
        if "." not in host and host != "localhost":
            found.add(host)
        if port and not port.isdigit():
            found.add(port)
    found.update(path.split("/"))
    found.update(v for k, v in urllib.parse.parse_qsl(query or "", keep_blank_values=True)
                 if k.lower() not in _PUBLIC_QUERY_KEYS)
    found.add(fragment or "")
    found |= {urllib.parse.unquote(s) for s in found}
    return {s for s in found if s}


def _clean(text: str, url: str) -> str:
    """``text`` on one line, at most MAX_ERROR_CHARS, with URLs and secrets of ``url`` blanked."""
    text = _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}://...", text)
    for secret in sorted(_secrets(url), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
        else:  # a short one only where it stands alone, or every "ok" would go
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


# --- what to tell ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    """One thing to tell people about an alarm. Times are Unix seconds."""

    kind: str  # "raised" | "cleared" | "reminder"
    #: short id, e.g. "3f9a1c2e" (the CLI acknowledges by it)
    alarm_id: str
    #: e.g. "station_offline", "signal_falling", or a station rule "instrument_silent"
    rule: str
    severity: str  # "info" | "warning" | "critical"
    station: str
    #: AmeriFlux-style site id if known
    site: str | None
    #: instrument name ("irga", "sonic", "ch4") or "station"
    source: str
    #: when the condition began (the raised time) [Unix s]
    since_s: float
    #: when this event happened (for cleared: when it cleared) [Unix s]
    time_s: float
    #: one line: what was observed
    what: str
    #: one line: what a technician should check
    check: str
    #: latest values of the variables the rule looks at (None: missing)
    last_values: dict[str, float | None] = field(default_factory=dict)
    origin: str = "fleet"  # "fleet" (a collector rule) or "station" (raised by the station itself)
    #: this may repeat an earlier delivery (after a failover); the text says so
    repeat: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("kind", KINDS), ("severity", SEVERITIES), ("origin", ORIGINS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Notice.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def _line(text: str) -> str:
    return " ".join(str(text).split())


def utc_minute(t_s: float) -> str:
    """``2026-12-07 10:14 UTC`` for Unix time ``t_s`` [s] (truncated to the minute)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_s))


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``, ``3 d 04 h`` (truncated; negative counts as 0)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h:02d} h"


def _value(v: float | None) -> str:
    return "missing" if v is None else f"{v:.6g}"


def render(notice: Notice) -> tuple[str, str]:
    """(title, body) of ``notice``: plain text, one fact per line, the same for the same notice."""
    tag = {"raised": notice.severity.upper(), "cleared": "CLEARED", "reminder": "REMINDER"}[notice.kind]
    who = _line(notice.station) + ("" if notice.source == "station" else f" ({_line(notice.source)})")
    title = f"[{tag}] {who}: {_line(notice.rule).replace('_', ' ')}"
    lines = []
    if notice.repeat:
        lines.append("Possibly a repeat: the collector failed over and may have sent this already.")
    lines += [f"Site: {_line(notice.site) if notice.site else 'unknown'}",
              f"Station: {_line(notice.station)}",
              f"Instrument: {'none (the station as a whole)' if notice.source == 'station' else _line(notice.source)}"]
    if notice.what.strip():
        lines.append(f"What: {_line(notice.what)}")
    if notice.kind == "cleared":
        lines.append(f"Since: {utc_minute(notice.since_s)}")
        lines.append(f"Cleared at {utc_minute(notice.time_s)} after {duration(notice.time_s - notice.since_s)}")
    else:
        lines.append(f"Since: {utc_minute(notice.since_s)} (for {duration(notice.time_s - notice.since_s)})")
    if notice.last_values:
        values = ", ".join(f"{_line(k)} = {_value(v)}" for k, v in sorted(notice.last_values.items()))
        lines.append(f"Last values: {values}")
    if notice.check.strip():
        lines.append(f"Check: {_line(notice.check)}")
    lines.append(f"Alarm id: {notice.alarm_id} ({notice.severity}, {notice.origin} rule {_line(notice.rule)})")
    if notice.kind != "cleared":
        lines.append(f"ack: {ACK_COMMAND.format(alarm_id=notice.alarm_id)}")
    return title, "\n".join(lines)


# --- delivery ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt to deliver one notice to one URL of one route."""

    alarm_id: str
    route: str
    #: the URL's index in the route's urls
    url_index: int
    #: the URL's scheme, e.g. "mailto", "json" (never the URL: it can hold secrets)
    scheme: str
    kind: str
    #: 1 for the first attempt
    attempt: int
    ok: bool
    #: apprise's reason for a failure: one line, at most MAX_ERROR_CHARS, no secrets
    error: str | None
    #: when the attempt ended [Unix s]
    time_s: float


@dataclass
class _Job:
    notice: Notice
    title: str
    body: str
    attempts: int = 0  # made so far


class _Destination:
    """One URL of one route: its own apprise object and queue."""

    def __init__(self, route: NotifyRoute, index: int) -> None:
        self.route, self.index = route, index
        self.url = route.urls[index]  # kept to blank its secrets in reasons; never logged
        self.scheme = self.url.split("://", 1)[0].lower()
        plugin, reason = _instantiate(self.url)
        if plugin is None:
            raise ValueError(f"route {route.name!r}: urls[{index}]: apprise cannot use this URL: {reason}")
        self.apprise = apprise.Apprise()
        self.apprise.add(plugin)
        self.jobs: deque[_Job] = deque()
        self.due = 0.0  # time.monotonic() when the head job may be attempted


def _failure_reason(result: Any) -> str:
    """apprise's own words for a failed notify(): the warnings it logged during the call."""
    entries = result.logs() if callable(getattr(result, "logs", None)) else []
    said = [e.message for e in entries if getattr(e, "level", "") in ("WARNING", "ERROR", "CRITICAL")]
    if said:
        return "; ".join(dict.fromkeys(said))
    status = getattr(result, "status", None)
    return f"apprise reported {status.name}" if status is not None else "apprise reported a failure"


class Notifier:
    """Delivers notices to the matching routes: queued for a worker thread per URL (:meth:`submit`) or
    at once (:meth:`deliver`). Each URL is retried on its own, from ``retry_min_s`` doubling up to
    ``retry_max_s`` [s], ``attempts`` attempts in all; ``record`` hears of every attempt."""

    def __init__(self, routes: list[NotifyRoute], attempts: int = 5, retry_min_s: float = 2.0,
                 retry_max_s: float = 60.0, record: Callable[[DeliveryRecord], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        if not 0 < retry_min_s <= retry_max_s:
            raise ValueError(f"need 0 < retry_min_s <= retry_max_s, got {retry_min_s} and {retry_max_s}")
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"route names must be unique, got {names}")
        for route in routes:
            problems = route.validate()
            if problems:
                raise ValueError(f"route {route.name!r}: {problems[0][0]}: {problems[0][1]}")
        self.routes = list(routes)
        self.attempts, self.retry_min_s, self.retry_max_s = attempts, retry_min_s, retry_max_s
        self._record, self._clock = record, clock
        self._dests = {r.name: [_Destination(r, i) for i in range(len(r.urls))] for r in self.routes}
        self._all = [d for ds in self._dests.values() for d in ds]
        self._cond = threading.Condition()
        self._abort = threading.Event()  # stop() ran out of time: no further attempt, no more waiting
        self._stopping = False
        self._stopped = False
        self._in_flight = 0
        self._threads: list[threading.Thread] = []

    # -- the queue and its worker

    def start(self) -> None:
        """Start one worker thread (a daemon) per URL, delivering what :meth:`submit` queues."""
        with self._cond:
            if self._threads or self._stopping:
                raise RuntimeError("the notifier was started already")
            self._threads = [threading.Thread(target=self._run, args=(d,), name=f"notify-{d.route.name}-{d.index}",
                                              daemon=True) for d in self._all]
        for thread in self._threads:
            thread.start()

    def health_problem(self) -> str | None:
        """None while every URL's worker runs (once started, until stopped)."""
        with self._cond:
            if self._stopping:
                return None
            dead = [t.name for t in self._threads if not t.is_alive()]
        return f"notification worker {dead[0]} ended" if dead else None

    def submit(self, notice: Notice) -> int:
        """Queue ``notice`` for every matching route; the number of routes matched (0 once stopped).
        Never waits on the network."""
        title, body = render(notice)
        routes = [r for r in self.routes if r.matches(notice)]
        full = []
        with self._cond:
            stopping = self._stopping
            if stopping:
                routes = []
            for route in routes:
                for dest in self._dests[route.name]:
                    if len(dest.jobs) >= MAX_QUEUED:
                        full.append(dest)
                    else:
                        dest.jobs.append(_Job(notice, title, body))
            self._cond.notify_all()
        if stopping:
            event(log, "notification_not_queued", logging.WARNING, alarm=notice.alarm_id, kind=notice.kind,
                  reason="the notifier is stopping")
        for dest in full:
            event(log, "notification_dropped", logging.ERROR, route=dest.route.name, url_index=dest.index,
                  scheme=dest.scheme, alarm=notice.alarm_id, kind=notice.kind,
                  reason=f"{MAX_QUEUED} notices already wait for this URL")
        return len(routes)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing is queued (retries included) and nothing in flight; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0 and not any(d.jobs for d in self._all),
                                       timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (retries and their backoff included) within ``timeout_s`` [s], then
        stop; what is left is dropped and logged. An attempt in flight cannot be interrupted: the
        daemon worker finishes it in the background."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._stopped:
                return
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not threads or any(t.is_alive() for t in threads):
            self._abort.set()
            with self._cond:
                self._cond.notify_all()
        with self._cond:
            self._stopped = True
            left = sum(len(d.jobs) for d in self._all)
        if left:
            event(log, "notifications_dropped", logging.WARNING, count=left,
                  reason="not delivered before the notifier stopped" if threads else "the notifier was never started")

    def _run(self, dest: _Destination) -> None:
        """The worker of one URL: its jobs in order, each retried after its backoff. A slow URL (a
        mail server timing out, apprise's own throttle between two messages to one service) holds
        back only itself."""
        while self._next(dest):
            job, done = dest.jobs[0], True  # only this thread removes this URL's jobs
            try:
                ok = self._attempt(dest, job).ok
                done = ok or job.attempts >= self.attempts
            except Exception as exc:  # a bug here must not end the notifications: drop this job
                event(log, "notifier_error", logging.ERROR, route=dest.route.name, alarm=job.notice.alarm_id,
                      error=repr(exc)[:300])
            finally:
                with self._cond:
                    self._in_flight -= 1
                    if done:
                        dest.jobs.popleft()
                        dest.due = 0.0
                    else:
                        dest.due = time.monotonic() + self._backoff(job.attempts)
                    self._cond.notify_all()

    def _next(self, dest: _Destination) -> bool:
        """Wait until ``dest``'s head job is due: True, or False to stop."""
        with self._cond:
            while not self._abort.is_set():
                now = time.monotonic()
                if dest.jobs and dest.due <= now:
                    self._in_flight += 1
                    return True
                if not dest.jobs and self._stopping:
                    return False
                self._cond.wait(dest.due - now if dest.jobs else None)
            return False

    # -- one notice, at once

    def deliver(self, notice: Notice) -> list[DeliveryRecord]:
        """Deliver ``notice`` now to every matching route and URL, one after the other, with
        retries (sleeping through the backoff): every attempt's record. For tests and the CLI."""
        title, body = render(notice)
        records = []
        for route in self.routes:
            if not route.matches(notice):
                continue
            for dest in self._dests[route.name]:
                job = _Job(notice, title, body)
                while True:
                    records.append(self._attempt(dest, job))
                    if records[-1].ok or job.attempts >= self.attempts:
                        break
                    if self._abort.wait(self._backoff(job.attempts)):
                        break
        return records

    def _backoff(self, attempts_made: int) -> float:
        return min(self.retry_min_s * 2 ** (attempts_made - 1), self.retry_max_s)

    def _attempt(self, dest: _Destination, job: _Job) -> DeliveryRecord:
        job.attempts += 1
        notice = job.notice
        kind = apprise.NotifyType.SUCCESS if notice.kind == "cleared" else _NOTIFY_TYPES[notice.severity]
        result = None
        try:
            result = dest.apprise.notify(body=job.body, title=job.title, notify_type=kind,
                                         body_format=apprise.NotifyFormat.TEXT)
            ok = bool(result)
            error = None if ok else _clean(_failure_reason(result), dest.url) or "apprise reported a failure"
        except Exception as exc:
            ok, error = False, _clean(f"{type(exc).__name__}: {exc}", dest.url)
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()
        rec = DeliveryRecord(alarm_id=notice.alarm_id, route=dest.route.name, url_index=dest.index,
                             scheme=dest.scheme, kind=notice.kind, attempt=job.attempts, ok=ok, error=error,
                             time_s=self._clock())
        where = {"route": rec.route, "url_index": rec.url_index, "scheme": rec.scheme, "alarm": rec.alarm_id,
                 "kind": rec.kind, "attempt": rec.attempt}
        if ok:
            event(log, "notification_sent", **where)
        else:
            event(log, "notification_failed", logging.WARNING, **where, attempts=self.attempts, error=error)
            if job.attempts >= self.attempts:
                event(log, "notification_abandoned", logging.ERROR, **where)
        if self._record is not None:
            try:
                self._record(rec)
            except Exception as exc:
                event(log, "delivery_record_failed", logging.ERROR, route=rec.route, alarm=rec.alarm_id,
                      error=repr(exc)[:300])
        return rec
