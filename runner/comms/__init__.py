"""Incident comms from every run: the seeds' INCIDENT ALERT, UPDATE and RESOLVED (and a
customer-facing update) rendered from templates a team can override, sent to the sinks
configured once (notify.yaml, or the daemon config's `notify:`) by `runbook run --notify`
and the daemon alike.

    config.py     notify.yaml: sinks (Slack webhook or bot token, generic webhook), lookup
    facts.py      what a message may say about a run: status, severity, times, findings
    templates.py  the shipped templates (templates/*.yaml) and a team's overrides
    slack.py      Block Kit within Slack's limits, everything from outside escaped
    delivery.py   one message to one sink over HTTP: retries, Retry-After, Slack's Web API
    notifier.py   every sink, journaled (sent, failed, the thread), undelivered retried
    announce.py   when a run says something: on each change of its status
    setup.py      the comms of one process (the CLI's notify.yaml, the daemon's templates)
    buttons.py    a proposal's Approve/Decline buttons in Slack (the Slack app's)
"""
