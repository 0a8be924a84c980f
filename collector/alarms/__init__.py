"""Fleet alarms on the collector: rules, state, notifications."""
