"""The alert daemon: alerts in, diagnostics at once, remedies only after an approval.

    intake (http.py, auth.py)  -> inbox (inbox.py, the journal DB): every accepted alert
                                  stored before the 202, by one group-commit writer (writer.py)
    dispatcher (service.py)    -> routes alerts (routing.py, matchers.py), groups them into
                                  runs, queues the runs
    workers (workers.py)       -> run playbooks through the engine (no terminal: remedies wait)
    approvals                  -> HTTP or `runbook approve`; the dispatcher queues the resume
    notifier (announce.py,     -> Slack / webhook: INCIDENT ALERT, UPDATE, RESOLVED
              notify.py)
    config.py, metrics.py, server.py (`runbook daemon`), alerts.py (payloads), logonce.py
"""
