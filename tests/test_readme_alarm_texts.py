"""The README shows the notification text of every rule (issue 16): rendered again from the real
rules, tracker and renderer, it must be what the README says."""

from __future__ import annotations

from pathlib import Path

import alarm_examples

from collector.alarms.rules import DEFAULT_RULES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_rule_has_its_notification_text_in_the_readme():
    shown = alarm_examples.examples()
    assert {r.name for r in DEFAULT_RULES} <= set(shown)
    for name, (title, body) in shown.items():
        assert f"```\n{title}\n\n{body}\n```" in README, f"README's text for {name} is not what is sent"
