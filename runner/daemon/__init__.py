"""The alert daemon: alerts in, diagnostics at once, remedies only after an approval.

    intake (HTTP)  -> inbox (journal DB): every accepted alert stored before the 202
    dispatcher     -> routes alerts, groups them into runs, queues the runs
    workers        -> run playbooks through the engine (no terminal: remedies wait)
    approvals      -> HTTP or `runbook approve`; the dispatcher queues the resume
    notifier       -> Slack / webhook: INCIDENT ALERT, UPDATE, RESOLVED
"""
