#!/usr/bin/env python3
"""A STAND-IN for `switchyard console`, used by the runner's integration tests until the real
console is merged (then these tests run against it). It is not the console: it speaks the
report protocol of Sources/SwitchyardConsoleAPI (POST /api/v1/reports) and the few API calls
the CLI makes with --console, and nothing else.

On purpose, it re-sends every control the runner has not answered yet with each answer (the
real console sends those above `controls_after`): a runner must queue a control once however
often it arrives.

usage: console_standin.py STATE_DIR [--port N] [--token T] [--cert PEM --key PEM]

It writes STATE_DIR/port once it listens, keeps its state in STATE_DIR/state.json (a restart
keeps it, as the console's database would), and answers reports with 503 while the file
STATE_DIR/down exists. With --token, a request without `Authorization: Bearer T` gets 401.
"""
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state_dir = sys.argv[1]
options = dict(zip(sys.argv[2::2], sys.argv[3::2]))
port = int(options.get("--port", "0"))
token = options.get("--token")
state_path = os.path.join(state_dir, "state.json")
lock = threading.Condition()

if os.path.exists(state_path):
    with open(state_path) as f:
        state = json.load(f)
else:
    state = {"next_rollout": 1, "next_control": 1, "next_feed": 1, "runs": {}, "feed": [], "reports": 0, "failed": 0}


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def save():
    with open(state_path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(state_path + ".tmp", state_path)


def feed(topic, run, kind, message, environment=None):
    state["feed"].append({"id": state["next_feed"], "time": now(), "topic": topic, "rollout": run["id"],
                          "service": run["report"]["service"], "environment": environment, "kind": kind, "message": message})
    state["next_feed"] += 1


def take_report(report):
    state["reports"] += 1
    run = state["runs"].get(report["run"])
    if run is None:
        run = {"id": state["next_rollout"], "steps": {}, "hooks": {}, "events": {}, "controls": [], "plan_text": None, "report": report}
        state["next_rollout"] += 1
        state["runs"][report["run"]] = run
    previous = run["report"]["rollout"]["outcome"] if "rollout" in run["report"] else None
    run["report"] = {k: v for k, v in report.items() if k not in ("steps", "hooks", "events", "plan_text")}
    if report.get("plan_text") is not None:
        run["plan_text"] = report["plan_text"]
    for kind in ("steps", "hooks", "events"):
        for row in report[kind]:
            if str(row["local_id"]) not in run[kind] and kind == "events":
                feed("event", run, row["kind"], row["message"], row.get("environment"))
            run[kind][str(row["local_id"])] = row
    for result in report["control_results"]:
        for control in run["controls"]:
            if control["id"] == result["id"] and control["result"] is None:
                control["result"] = result["result"]
                control["handled_at"] = result["handled_at"]
                feed("control", run, control["command"], result["result"])
    if previous != report["rollout"]["outcome"]:
        feed("rollout", run, report["rollout"]["outcome"], "rollout is " + report["rollout"]["outcome"])
    acknowledged = {kind: max([int(k) for k in run[kind]], default=0) for kind in ("steps", "hooks", "events")}
    controls = [{k: c[k] for k in ("id", "command", "argument", "actor")} for c in run["controls"] if c["result"] is None]
    save()
    lock.notify_all()
    return {"rollout": run["id"], "acknowledged": acknowledged, "controls": controls}


def summary(run):
    r = run["report"]
    rollout = r["rollout"]
    environments = []
    for name in r["environments"]:
        deployment = next((d for d in reversed(r["deployments"]) if d["environment"] == name), None)
        environments.append({"name": name, "state": deployment["outcome"] if deployment else "waiting",
                             "deployment": deployment["local_id"] if deployment else None})
    return {"id": run["id"], "run": r["run"], "service": r["service"], "version": r["version"], "state": rollout["outcome"],
            "reason": rollout.get("reason"), "mode": "reported", "kind": "deploy", "actor": r["actor"], "host": r["host"],
            "started_at": rollout["started_at"], "ended_at": rollout.get("ended_at"), "environment": rollout.get("environment"),
            "progress": rollout.get("progress"), "environments": environments, "change": r.get("change")}


def deployment(run, d, whole):
    out = dict(d)
    out["id"] = out.pop("local_id")
    out["rollout"] = run["id"]
    out["service"] = run["report"]["service"]
    if whole:
        out["steps"] = [s for s in run["steps"].values() if s["deployment"] == d["local_id"]]
        out["hooks"] = [h for h in run["hooks"].values() if h.get("deployment") == d["local_id"]]
    return out


def detail(run):
    events = sorted(run["events"].values(), key=lambda e: e["local_id"])
    return {"rollout": summary(run), "deployments": [deployment(run, d, True) for d in run["report"]["deployments"]],
            "events": [{k: e.get(k) for k in ("time", "kind", "environment", "message")} for e in events],
            "controls": run["controls"]}


def run_by_id(rollout_id):
    return next((r for r in state["runs"].values() if r["id"] == rollout_id), None)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        if token is None or self.headers.get("Authorization") == "Bearer " + token:
            return True
        self.reply(401, {"error": "the token is not valid", "field": None})
        return False

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.authorized():
            return
        path = urllib.parse.urlparse(self.path).path
        if path == "/api/v1/reports":
            with lock:
                if os.path.exists(os.path.join(state_dir, "down")):
                    state["failed"] += 1
                    save()
                    return self.reply(503, {"error": "the stand-in is down"})
                return self.reply(200, take_report(json.loads(body)))
        match = re.fullmatch(r"/api/v1/rollouts/(\d+)/(approve|pause|resume|promote|abort)", path)
        if match:
            argument = json.loads(body or b"{}").get("argument")
            with lock:
                run = run_by_id(int(match.group(1)))
                if run is None:
                    return self.reply(404, {"error": "no rollout %s" % match.group(1)})
                if run["report"]["rollout"]["outcome"] != "running":
                    return self.reply(409, {"error": "rollout %d is not running" % run["id"]})
                control = {"id": state["next_control"], "command": match.group(2), "argument": argument, "actor": "standin-user",
                           "created_at": now(), "handled_at": None, "result": None}
                state["next_control"] += 1
                run["controls"].append(control)
                save()
                deadline = time.time() + 3
                while control["result"] is None and time.time() < deadline:
                    lock.wait(0.1)
                return self.reply(200 if control["result"] else 202, {"control": control["id"], "rollout": run["id"],
                                                                      "command": control["command"], "result": control["result"]})
        self.reply(404, {"error": "no such endpoint"})

    def do_GET(self):
        if not self.authorized():
            return
        url = urllib.parse.urlparse(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        limit = int(query.get("limit", "20"))
        with lock:
            if url.path == "/api/v1/rollouts":
                runs = sorted(state["runs"].values(), key=lambda r: -r["id"])
                rows = [summary(r) for r in runs if query.get("service") in (None, r["report"]["service"])
                        and query.get("state") in (None, r["report"]["rollout"]["outcome"])]
                return self.reply(200, {"rollouts": rows[:limit]})
            match = re.fullmatch(r"/api/v1/rollouts/(\d+)", url.path)
            if match:
                run = run_by_id(int(match.group(1)))
                return self.reply(200, detail(run)) if run else self.reply(404, {"error": "no rollout %s" % match.group(1)})
            if url.path == "/api/v1/deployments":
                rows = []
                for run in sorted(state["runs"].values(), key=lambda r: -r["id"]):
                    for d in reversed(run["report"]["deployments"]):
                        if query.get("service") in (None, run["report"]["service"]) and query.get("environment") in (None, d["environment"]):
                            rows.append(deployment(run, d, False))
                return self.reply(200, {"deployments": rows[:limit]})
            if url.path == "/api/v1/events":
                after = int(query.get("after", "0"))
                rollout = int(query["rollout"]) if "rollout" in query else None
                deadline = time.time() + int(query.get("wait", "0"))
                while True:
                    entries = [e for e in state["feed"] if e["id"] > after and rollout in (None, e["rollout"])]
                    if entries or time.time() >= deadline:
                        break
                    lock.wait(0.2)
                return self.reply(200, {"events": entries, "last": entries[-1]["id"] if entries else after})
        self.reply(404, {"error": "no such endpoint"})

    def log_message(self, *arguments):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
if "--cert" in options:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(options["--cert"], options["--key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(os.path.join(state_dir, "port.tmp"), "w") as f:
    f.write(str(server.server_port))
os.replace(os.path.join(state_dir, "port.tmp"), os.path.join(state_dir, "port"))
server.serve_forever()
