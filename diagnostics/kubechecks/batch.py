"""`kubernetes.jobs`: the failed Jobs and CronJobs of a workload's namespace, with the Failed
condition's reason (BackoffLimitExceeded, DeadlineExceeded), the last pod's exit, and for a
CronJob its last schedule and whether its last run failed. After k8sgpt's job and cronjob
analyzers: a Job that failed and then succeeded is healthy, an older run of a CronJob is
superseded by its last, a suspended CronJob does not run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from runner.model import Duration

from ..grading import by_level, worst
from ..kubernetes.objects import as_int, parse_time
from . import kubeapi
from .kubeapi import Params


class JobsParams(Params):
    within: Duration = Field(86400.0, description="failures that ended longer ago than this "
                             "are counted but not graded")


def _job_view(job: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    meta, spec, st = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    failed, complete = kubeapi.condition(job, "Failed"), kubeapi.condition(job, "Complete")
    owner = next((r.get("name") for r in meta.get("ownerReferences") or []
                  if r.get("kind") == "CronJob"), None)
    mine = [p for p in pods if (p["metadata"].get("labels") or {}).get("job-name")
            == meta["name"]]
    last_exit = None
    for pod in sorted(mine, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (
                cs.get("lastState") or {}).get("terminated")
            if term and term.get("exitCode"):
                last_exit = {"pod": pod["metadata"]["name"], "exit_code": term.get("exitCode"),
                             "reason": term.get("reason"), "message": term.get("message")}
    return {"name": meta["name"], "cronjob": owner,
            "created": meta.get("creationTimestamp"),
            "failed": failed.get("status") == "True",
            "succeeded": complete.get("status") == "True",
            "reason": failed.get("reason"), "message": failed.get("message"),
            "finished": failed.get("lastTransitionTime") or st.get("completionTime"),
            "failures": as_int(st.get("failed")), "active": as_int(st.get("active")),
            "backoff_limit": as_int(spec.get("backoffLimit"), 6), "last_exit": last_exit}


def grade_jobs(jobs: list[dict[str, Any]], cronjobs: list[dict[str, Any]],
               pods: list[dict[str, Any]], now: datetime, params: JobsParams
               ) -> dict[str, Any]:
    views = sorted((_job_view(j, pods) for j in jobs), key=lambda v: v["created"] or "")
    latest_of = {}  # a CronJob's last run: the one that counts
    for view in views:
        if view["cronjob"]:
            latest_of[view["cronjob"]] = view
    problems: list[dict[str, Any]] = []
    older = 0
    for view in views:
        if view["cronjob"] and latest_of[view["cronjob"]] is not view:
            continue  # an older run of a CronJob: its last run says how it goes
        exit_text = (f"; its last pod {view['last_exit']['pod']} exited with code "
                     f"{view['last_exit']['exit_code']} ({view['last_exit']['reason']})"
                     if view["last_exit"] else "")
        who = (f"CronJob {view['cronjob']}'s last run, job {view['name']}," if view["cronjob"]
               else f"Job {view['name']}")
        if view["failed"]:
            age = kubeapi.seconds_since(parse_time(view["finished"]), now)
            if age is not None and age > params.within:
                older += 1
                continue
            problems.append({"level": "critical", "job": view["name"],
                             "cronjob": view["cronjob"],
                             "say": f"{who} failed ({view['reason']}: {view['message']}; "
                                    f"{view['failures']} failed pod(s), backoffLimit "
                                    f"{view['backoff_limit']}){exit_text}"})
        elif view["failures"] and not view["succeeded"]:
            problems.append({"level": "warning", "job": view["name"],
                             "cronjob": view["cronjob"],
                             "say": f"{who} has failed {view['failures']} time(s) and retries "
                                    f"(backoffLimit {view['backoff_limit']}){exit_text}"})
    crons = []
    for cron in cronjobs:
        name, spec, st = cron["metadata"]["name"], cron.get("spec") or {}, cron.get("status") or {}
        last = latest_of.get(name)
        crons.append({"name": name, "schedule": spec.get("schedule"),
                      "suspended": bool(spec.get("suspend")),
                      "last_schedule": st.get("lastScheduleTime"),
                      "last_successful": st.get("lastSuccessfulTime"),
                      "active": len(st.get("active") or []),
                      "last_job": last["name"] if last else None,
                      "last_job_failed": bool(last and last["failed"])})
        if spec.get("suspend"):
            problems.append({"level": "warning", "job": None, "cronjob": name,
                             "say": f"CronJob {name} is suspended: it does not run"})
    level = worst(p["level"] for p in problems)
    problems = by_level(problems)
    if problems:
        summary = "; ".join(p["say"] for p in problems)
    else:
        summary = (f"{len(views)} Job(s) and {len(cronjobs)} CronJob(s): none failed"
                   + (f" recently ({older} older failure(s) not graded)" if older else ""))
    return {"ok": level == "ok", "level": level, "summary": summary,
            "failed": [p["job"] for p in problems if p["level"] == "critical" and p["job"]],
            "problems": [p["say"] for p in problems], "jobs": views, "cronjobs": crons,
            "older_failures": older}


def jobs(view: Any, params: JobsParams) -> dict[str, Any]:
    reader = kubeapi.reader(view)
    api = reader.api
    found = kubeapi.list_preferred(api, "batch", ("v1",), "jobs")
    cronjobs = kubeapi.list_preferred(api, "batch", ("v1", "v1beta1"), "cronjobs")
    names = sorted(j["metadata"]["name"] for j in found
                   if kubeapi.condition(j, "Failed").get("status") == "True" or
                   as_int((j.get("status") or {}).get("failed")))[-20:]
    pods: list[dict[str, Any]] = []
    if names:
        pods = list(api.call("list", "pods", api.core.list_namespaced_pod, reader.namespace,
                             label_selector=f"job-name in ({','.join(names)})"
                             ).get("items") or [])
    return grade_jobs(found, cronjobs, pods, datetime.now(UTC), params)
