"""Seeds a console with rollouts through its report protocol (POST /api/v1/reports), as runners
would send them: many services for the overview, and finished rollouts with steps, analysis
figures and hook output for the rollout, history and statistics pages.

    python3 seed.py URL TOKEN [--services 100] [--environments dev,stage,prod,eu]
"""
import argparse
import datetime
import json
import urllib.request
import uuid

ENVIRONMENTS = ["dev", "stage", "prod", "eu"]


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Console:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read().decode()
                return answer.status, (json.loads(text) if text else {})
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"error": text}

    def report(self, report):
        status, answer = self.call("POST", "/api/v1/reports", report)
        if status != 200:
            raise RuntimeError(f"report of {report['service']} {report['version']} refused ({status}): {answer}")
        return answer


def report(service, version, environments, deployments, outcome, started, ended=None, reason=None, current=None, progress=None,
           actor="github:alice", steps=(), hooks=(), events=(), commit_time=None, run=None):
    """A whole report; `deployments` is a list of (environment, outcome, started, ended, reason) in order."""
    records = []
    for number, (environment, state, began, finished, why) in enumerate(deployments, start=1):
        records.append({"local_id": number, "environment": environment, "version": version, "strategy": "canary", "actor": actor,
                        "started_at": iso(began), "ended_at": iso(finished) if finished else None, "outcome": state, "reason": why,
                        "pool": "green", "previous_pool": "blue", "previous_version": None})
    change = {"commit": uuid.uuid4().hex[:12], "ticket": version.split("-")[0] if "-" in version else None}
    if commit_time:
        change["commit_time"] = iso(commit_time)
    return {"run": run or str(uuid.uuid4()), "service": service, "version": version, "actor": actor, "host": "ci-runner-3", "pid": 4242,
            "plan_path": f"deploy/{service}.yaml", "environments": environments, "change": change,
            "rollout": {"started_at": iso(started), "ended_at": iso(ended) if ended else None, "outcome": outcome, "reason": reason,
                        "heartbeat_at": iso(ended or started), "environment": current, "progress": progress},
            "deployments": records, "steps": list(steps), "hooks": list(hooks), "events": list(events),
            "control_results": [], "locks": [], "controls_after": 0}


def seed_overview(console, services=100, environments=ENVIRONMENTS, now=None):
    """One promoted rollout per service through every environment: service-NNN runs version
    vNNN.1 everywhere. Returns {service: {environment: version}}."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    expected = {}
    for index in range(services):
        service = f"service-{index:03d}"
        version = f"v{index}.1"
        began = now - datetime.timedelta(hours=2, minutes=index)
        deployments = []
        for step, environment in enumerate(environments):
            start = began + datetime.timedelta(minutes=3 * step)
            deployments.append((environment, "promoted", start, start + datetime.timedelta(minutes=2), None))
        console.report(report(service, version, list(environments), deployments, "promoted", began,
                              ended=began + datetime.timedelta(minutes=3 * len(environments)),
                              actor=["github:alice", "github:bob", "ci"][index % 3]))
        expected[service] = {environment: version for environment in environments}
    return expected


def seed_stories(console, now=None):
    """A promoted, a rolled-back (with analysis figures and hook output) and a failed rollout of
    `checkout` over days, for the rollout, history and statistics pages. Returns the rolled-back rollout's id."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    environments = ["stage", "prod"]
    rolled_back = None
    for day in range(6, -1, -1):
        began = now - datetime.timedelta(days=day, hours=1)
        commit = began - datetime.timedelta(hours=3 + day)
        version = f"OPS-{100 + day}-checkout-{began:%Y%m%d%H%M}"
        stage_end = began + datetime.timedelta(minutes=4)
        if day in (4, 1):
            # Rolled back in prod: the analysis saw the canary fail.
            steps, hooks, events = analysis_story(began, stage_end)
            deployments = [("stage", "promoted", began, stage_end, None),
                           ("prod", "rolled_back", stage_end, stage_end + datetime.timedelta(minutes=3),
                            "analysis failed: error rate 12.50% > max 5.00%")]
            answer = console.report(report("checkout", version, environments, deployments, "rolled_back", began,
                                           ended=stage_end + datetime.timedelta(minutes=3),
                                           reason="prod: analysis failed: error rate 12.50% > max 5.00%",
                                           steps=steps, hooks=hooks, events=events, commit_time=commit, actor="github:bob"))
            rolled_back = answer["rollout"]
            # Restored by the version before, a few minutes later.
            fix = stage_end + datetime.timedelta(minutes=20)
            console.report(report("checkout", version + "-fix", environments,
                                  [("stage", "promoted", fix, fix + datetime.timedelta(minutes=3), None),
                                   ("prod", "promoted", fix + datetime.timedelta(minutes=3), fix + datetime.timedelta(minutes=7), None)],
                                  "promoted", fix, ended=fix + datetime.timedelta(minutes=7), commit_time=commit, actor="github:bob"))
        elif day == 3:
            console.report(report("checkout", version, environments, [("stage", "failed", began, stage_end, "start hook failed (exit 1)")],
                                  "failed", began, ended=stage_end, reason="stage: start hook failed (exit 1)", commit_time=commit))
        else:
            console.report(report("checkout", version, environments,
                                  [("stage", "promoted", began, stage_end, None),
                                   ("prod", "promoted", stage_end, stage_end + datetime.timedelta(minutes=5), None)],
                                  "promoted", began, ended=stage_end + datetime.timedelta(minutes=5), commit_time=commit))
    return rolled_back


def analysis_story(began, prod_start):
    """Steps, hooks and events of a canary in prod whose analysis fails at 50%."""
    steps, events = [], []
    moment = prod_start

    def at(seconds):
        return iso(moment + datetime.timedelta(seconds=seconds))

    figures = [(10, "10%", 0.002, 41.0, 120), (20, "10%", 0.004, 44.0, 131), (40, "50%", 0.031, 80.0, 610), (50, "50%", 0.125, 95.0, 640)]
    steps.append({"local_id": 1, "deployment": 2, "time": at(5), "kind": "step", "detail": "canary green at 10% (step 1 of 4)", "weight": "10%"})
    for number, (seconds, weight, error_rate, p99, requests) in enumerate(figures, start=2):
        failed = error_rate > 0.05
        steps.append({"local_id": number, "deployment": 2, "time": at(seconds), "kind": "analysis",
                      "detail": f"{'FAIL' if failed else 'pass'} at {weight}", "weight": weight,
                      "verdict": "fail" if failed else "pass", "requests": requests, "error_rate": error_rate,
                      "baseline_error_rate": 0.003, "p99_ms": p99})
        if number == 3:
            steps.append({"local_id": 10, "deployment": 2, "time": at(30), "kind": "step", "detail": "canary green at 50% (step 3 of 4)", "weight": "50%"})
    steps.append({"local_id": 11, "deployment": 2, "time": at(55), "kind": "rolling_back", "detail": "rolling back the canary green from 50%", "weight": "0%"})
    hooks = [
        {"local_id": 1, "deployment": 1, "phase": "start", "command": "deploy/start.sh stage green", "exit_code": 0, "duration_ms": 1800,
         "output": "pulling image checkout\nstarted g1 on port 9102\nhealthy after 1.2s\n", "time": iso(began + datetime.timedelta(seconds=2))},
        {"local_id": 2, "deployment": 2, "phase": "start", "command": "deploy/start.sh prod green", "exit_code": 0, "duration_ms": 2100,
         "output": "pulling image checkout\nstarted g1 on port 9202\nstarted g2 on port 9203\nwarning: cache cold, first requests slow\n",
         "time": at(2)},
    ]
    kinds = [(0, "environment", "prod: canary to pool green (2 of 2; active now: blue)"), (2, "hook", "start: deploy/start.sh prod green"),
             (5, "step", "canary green at 10% (step 1 of 4)"), (10, "analysis", "prod: pass (error rate 0.20%, p99 41ms, 120 requests)"),
             (40, "analysis", "prod: pass (error rate 3.10%, p99 80ms, 610 requests)"),
             (50, "analysis", "prod: FAIL 1 of 1 (error rate 12.50% > max 5.00%)"), (55, "rolling_back", "rolling back the canary green from 50%"),
             (60, "rolled_back", "prod: rolled back: analysis failed: error rate 12.50% > max 5.00%")]
    for number, (seconds, kind, message) in enumerate(kinds, start=1):
        events.append({"local_id": number, "time": at(seconds), "kind": kind, "environment": "prod", "message": message, "fields": "{}"})
    return steps, hooks, events


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--environments", default=",".join(ENVIRONMENTS))
    parser.add_argument("--stories", action="store_true", help="also the checkout service's week of rollouts")
    arguments = parser.parse_args()
    console = Console(arguments.url, arguments.token)
    seed_overview(console, arguments.services, arguments.environments.split(","))
    if arguments.stories:
        print("rolled back:", seed_stories(console))


if __name__ == "__main__":
    main()
