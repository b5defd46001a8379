#!/usr/bin/env python3
"""Model-based chaos test of Switchyard's admin API (run it through scripts/chaos-model).

Starts demo-app upstreams and a Switchyard, puts it under wrk load plus checking clients (fast
requests and slow /sleep requests, so that requests are in flight on the servers while they
change), and sends a seeded random sequence of admin operations: add, drain, undrain, remove,
weight, flip, canary, rules, rollback, lock and unlock, reload of a changed file and reload of an
invalid one. A model predicts each answer (status and error) and the runtime state after it.

It fails when:
- the proxy dies or an admin answer is not well-formed JSON with the predicted status and error;
- GET /v1/status differs from the model (checked every 50 operations and at the end);
- a checked request gets no well-formed HTTP response, or is answered by a server or pool that no
  acknowledged state routed it to during its lifetime (see "The request rule" below);
- wrk sees a socket error or timeout, or a non-2xx answer while no state ever left its route
  without a server;
- requests stay counted as active after the load stops, or the proxy does not stop cleanly.

The request rule: state k (the runtime state after the k-th acknowledged change) may be in effect
from the moment the change was sent until the next change was acknowledged. A request sent at a
and answered at b may have been routed by any state in effect at some moment of [a, b]. A 200 must
come from a server that one of those states had ready with a positive weight, in a pool that state
routes the request to (rules, canary with its sticky header, active). A 503 is allowed only when
one of those states routes the request to a pool without such a server, and it must name that
pool. Any other status is a failure.

Usage: chaos-model.py --binary PATH [--seed N] [--operations N] [--max-seconds S]
Exit status: 0 when every check passed, 1 otherwise.
"""

import argparse
import array
import bisect
import collections
import http.client
import json
import multiprocessing
import os
import queue as queue_module
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

POOLS = ("blue", "green", "grey", "orange")  # orange is in the file only now and then
SLOTS = {"blue": 4, "green": 4, "grey": 4, "orange": 3}
SERVICES = {"web": ("blue", "green"), "api": ("grey", "blue")}  # file's active and standby
SERVICE_HOST = {"web": "web.test", "api": "api.test"}
ROUTE_VALUES = ("blue", "green", "grey", "orange", "nowhere")
INF = float("inf")


def fnv_bucket(text):
    """The canary bucket of a sticky key: 64-bit FNV-1a modulo 10,000 (RoutingSnapshot.bucket)."""
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % 10000


def parse_percent(text):
    """BasisPoints.parse: "2.5%" -> 250; None when badly written or above 100%."""
    m = re.fullmatch(r"\s*(\d+)(?:\.(\d{1,2}))?%\s*", text)
    if not m:
        return None
    whole = int(m.group(1))
    fraction = 0
    if m.group(2) is not None:
        fraction = int(m.group(2)) * (10 if len(m.group(2)) == 1 else 1)
    value = whole * 100 + fraction
    return value if value <= 10000 else None


# MARK: - The model

# A server is (weight, state, address, removed): address is set for servers added at runtime,
# removed is True for a file server removed at runtime (RuntimeState.Server).
# A service is (active, standby, canary, rules); canary is (pool, basis points, sticky) and
# sticky is None, ("cookie", NAME), ("header", NAME) or ("client_ip",); a rule is
# (kind, name, value, pool).


class FileConfig:
    """The parts of the configuration file the test changes: which servers each pool has."""

    def __init__(self, pools):
        self.pools = pools  # [(pool, [(server, weight)])] in file order

    def pool_names(self):
        return [p for p, _ in self.pools]

    def servers(self, pool):
        for p, entries in self.pools:
            if p == pool:
                return entries
        return None

    def yaml(self, directory, addresses, defect=None):
        lines = ["workers: 2", "listeners:", "  - bind: 127.0.0.1:0",
                 f"admin: {{ socket: {directory}/admin.sock }}", f"state_file: {directory}/state.json",
                 "access_log: off", "shutdown_timeout: 10s", "pools:"]
        for pool, entries in self.pools:
            extra = []
            if pool == "blue" and defect in ("weight", "key", "address", "duplicate"):
                bad = {"weight": "{ name: bad-1, address: 127.0.0.1:1, weight: 5000 }",
                       "key": "{ name: bad-1, address: 127.0.0.1:1, wieght: 5 }",
                       "address": "{ name: bad-1 }",
                       "duplicate": "{ name: bad-1, address: 127.0.0.1:1 }"}[defect]
                extra = [bad] * (2 if defect == "duplicate" else 1)
            lines.append(f"  {pool}:")
            if not entries and not extra:
                lines.append("    servers: []")
                continue
            lines.append("    servers:")
            for name, weight in entries:
                lines.append(f"      - {{ name: {name}, address: {addresses[name]}, weight: {weight} }}")
            for bad in extra:
                lines.append(f"      - {bad}")
        lines.append("services:")
        for name, (active, standby) in SERVICES.items():
            lines.append(f"  {name}:")
            if name != "web":
                lines.append(f"    match: {{ hosts: [{SERVICE_HOST[name]}] }}")
            lines.append(f"    active: {'purple' if defect == 'pool' and name == 'web' else active}")
            lines.append(f"    standby: {standby}")
        if defect == "syntax":
            lines.append("pools: [ { unclosed")
        return "\n".join(lines) + "\n"


def file_state(file):
    """RuntimeState(config:): the state the file describes, before any runtime change."""
    services = {name: (active, standby, None, ()) for name, (active, standby) in SERVICES.items()}
    servers = {pool: {name: (weight, "ready", None, None) for name, weight in entries} for pool, entries in file.pools}
    return services, servers


class Model:
    """Predicts every admin answer and the runtime state, mirroring docs/admin-api.md and
    docs/switching.md (including how a reload merges runtime changes with the file)."""

    HISTORY_LIMIT = 50

    def __init__(self, file, addresses):
        self.file = file
        self.addresses = addresses
        self.services, self.servers = file_state(file)
        self.base_services, self.base_servers = file_state(file)
        self.generation = 1
        self.history = {name: [] for name in SERVICES}
        self.lock = None  # the token while we hold the lock

    # Views

    def pool_view(self, pool):
        """The servers /v1/status lists for a pool: (name, address, weight, state), file servers in
        file order, then servers added at runtime in name order."""
        entries = self.file.servers(pool)
        live = self.servers.get(pool, {})
        names = {n for n, _ in entries}
        out = []
        for name, weight in entries:
            s = live.get(name, (weight, "ready", None, None))
            if s[3]:
                continue
            out.append((name, self.addresses[name], s[0], s[1]))
        for name in sorted(live):
            s = live[name]
            if name in names or s[3] or s[2] is None:
                continue
            out.append((name, s[2], s[0], s[1]))
        return out

    def expected_status(self):
        services = {}
        for name, (active, standby, canary, rules) in self.services.items():
            services[name] = {"active": active, "standby": standby,
                              "canary": None if canary is None else {"pool": canary[0], "weight": canary[1], "sticky": canary[2]},
                              "rules": [list(r) for r in rules]}
        return {"generation": self.generation, "locked": self.lock is not None, "services": services,
                "pools": {pool: [list(s) for s in self.pool_view(pool)] for pool in self.file.pool_names()}}

    def routing_view(self):
        """What the request checks need of this state: per service its rules (header rules on
        existing pools), canary and active pool; per pool the servers that take new requests."""
        present = set(self.file.pool_names())
        eligible = {pool: frozenset(n for n, _, w, st in self.pool_view(pool) if st == "ready" and w > 0) for pool in present}
        services = {}
        for name, (active, standby, canary, rules) in self.services.items():
            r = tuple((rn.lower(), rv, rp) for kind, rn, rv, rp in rules if rp in present and kind == "header")
            c = canary if canary is not None and canary[0] in present and canary[1] > 0 else None
            services[name] = (r, c, active if active in present else None, active)
        return services, eligible

    # Predictions. Each returns ([(status, error)], apply) where apply (or None) changes the model
    # once the proxy acknowledged; the checks come in the order the proxy makes them.

    def locked_out(self, op):
        """The lock is held and the operation goes without its token."""
        return self.lock is not None and not op["use_token"]

    def mutation(self, op, apply, extra=()):
        """The end of every change's checks (ControlPlane.mutate): the lock, then If-Match."""
        if self.locked_out(op):
            return [(423, "locked")] + list(extra), None
        if op["if_match"] == "stale":
            return [(412, "stale generation")] + list(extra), None
        return [(200, None)] + list(extra), apply

    def push_history(self, name, service):
        h = self.history[name]
        h.append(service)
        if len(h) > self.HISTORY_LIMIT:
            del h[0]

    def set_service(self, name, service):
        """A routing change: the routing before it goes to the rollback history."""
        self.push_history(name, self.services[name])
        self.services[name] = service

    def predict(self, op):
        kind = op["kind"]
        body = op.get("body") or {}
        if kind in ("drain", "undrain", "weight"):
            pool, name = op["pool"], op["server"]
            weight = body.get("weight")
            if weight is not None and not 0 <= weight <= 1000:
                return [(400, "invalid weight")], None
            if "state" in body and body["state"] not in ("ready", "drain", "maint"):
                return [(400, "invalid state")], None
            if pool not in self.servers:
                return [(404, "no such pool")], None
            current = self.servers[pool].get(name)
            if current is None or current[3]:
                return [(404, "no such server")], None

            def apply():
                w, st, address, removed = self.servers[pool][name]
                self.servers[pool][name] = (w if weight is None else weight, body.get("state", st), address, removed)
            return self.mutation(op, apply)
        if kind == "add":
            pool, name, address = op["pool"], body["name"], body["address"]
            if not valid_name(name):
                return [(400, "invalid name")], None
            if not re.fullmatch(r"(\d+\.\d+\.\d+\.\d+|localhost|\[[0-9a-fA-F:]+\]):\d{1,5}", address):
                return [(400, "invalid address")], None
            weight = body.get("weight", 100)
            if not 0 <= weight <= 1000:
                return [(400, "weight out of range")], None
            state = body.get("state", "ready")
            if state not in ("ready", "drain", "maint"):
                return [(400, "invalid state")], None
            if pool not in self.servers:
                return [(404, "no such pool")], None
            existing = self.servers[pool].get(name)
            if existing is not None and not existing[3]:
                return [(409, "server exists")], None
            in_file = any(n == name for n, _ in self.file.servers(pool))
            if in_file and self.addresses[name] != address:
                return [(409, "server exists")], None

            def apply():
                self.servers[pool][name] = (weight, state, None if in_file else address, None)
            return self.mutation(op, apply)
        if kind == "remove":
            pool, name = op["pool"], op["server"]
            if pool not in self.servers:
                return [(404, "no such pool")], None
            current = self.servers[pool].get(name)
            if current is None or current[3]:
                return [(404, "no such server")], None
            if current[1] == "ready":
                return [(409, "server not drained")], None
            in_file = any(n == name for n, _ in self.file.servers(pool))

            def apply():
                if in_file:
                    w, st, address, _ = self.servers[pool][name]
                    self.servers[pool][name] = (w, st, address, True)
                else:
                    del self.servers[pool][name]
            # Whether requests are still in flight on it is the proxy's to tell.
            return self.mutation(op, apply, extra=[(409, "requests in flight")])
        if kind == "flip":
            name = op["service"]
            to = body.get("to")
            if to is not None and not valid_name(to):
                return [(400, "invalid to")], None
            if name not in self.services:
                return [(404, "no such service")], None
            active, standby, canary, rules = self.services[name]
            if to is not None:
                if to not in self.servers:
                    return [(404, "no such pool")], None
            else:
                if standby is None:
                    return [(409, "nothing to flip to")], None
                to = standby
            if to == active:
                return [(409, "already active")], None

            def apply():
                self.set_service(name, (to, active, None if canary is not None and canary[0] == to else canary, rules))
            return self.mutation(op, apply)
        if kind == "canary":
            name = op["service"]
            w = body.get("weight")
            if isinstance(w, str):
                bp = parse_percent(w)
            elif isinstance(w, (int, float)) and not isinstance(w, bool):
                bp = round(w * 100)
                bp = bp if 0 <= bp <= 10000 else None
            else:
                bp = None
            if bp is None:
                return [(400, "invalid weight")], None
            if "pool" in body and not valid_name(body["pool"]):
                return [(400, "invalid pool")], None
            current = self.services.get(name)
            pool = body.get("pool")
            if pool is None:
                pool = current[2][0] if current is not None and current[2] is not None else ""
            if bp > 0 and pool == "":
                return [(409, "no canary pool")], None
            if current is None:
                return [(404, "no such service")], None
            active, standby, canary, rules = current
            if bp > 0:
                if pool not in self.servers:
                    return [(404, "no such pool")], None
                if pool == active:
                    return [(409, "canary is the active pool")], None
            if "sticky" in body:
                s = body["sticky"]
                sticky = None if s is None else ("cookie", s["cookie"]) if "cookie" in s else ("header", s["header"]) if "header" in s else ("client_ip",)
            else:
                sticky = canary[2] if canary is not None else None

            def apply():
                self.set_service(name, (active, standby, None if bp == 0 else (pool, bp, sticky), rules))
            return self.mutation(op, apply)
        if kind == "rules":
            name = op["service"]
            items = body.get("rules")
            rules = []
            for i, item in enumerate(items):
                if not isinstance(item.get("value"), str):
                    return [(400, "invalid rule")], None
                if not isinstance(item.get("pool"), str) or not valid_name(item["pool"]):
                    return [(400, f"invalid rules[{i}].pool")], None
                if ("header" in item) == ("cookie" in item):
                    return [(400, "invalid rule")], None
                kind = "header" if "header" in item else "cookie"
                rules.append((kind, item[kind], item["value"], item["pool"]))
            if name not in self.services:
                return [(404, "no such service")], None
            for r in rules:
                if r[3] not in self.servers:
                    return [(404, "no such pool")], None
            active, standby, canary, _ = self.services[name]

            def apply():
                self.set_service(name, (active, standby, canary, tuple(rules)))
            return self.mutation(op, apply)
        if kind == "rollback":
            name = op["service"]
            if name not in self.services:
                return [(404, "no such service")], None
            if not self.history[name]:
                return [(409, "nothing to roll back")], None

            def apply():
                self.services[name] = self.history[name].pop()
            return self.mutation(op, apply)
        if kind == "lock":
            if not valid_duration(body.get("ttl", "10m")):
                return [(400, "invalid ttl")], None
            if self.lock is not None and not op["use_token"]:
                return [(423, "locked")], None
            return [(200, None)], None  # the token is taken from the answer
        if kind == "unlock":
            if self.lock is None:
                return [(409, "not locked")], None
            if not op["force"] and not op["use_token"]:
                return [(423, "locked")], None

            def apply():
                self.lock = None
            return [(200, None)], apply
        if kind in ("reload", "reload-invalid"):
            if self.locked_out(op):
                return [(423, "locked")], None
            if kind == "reload-invalid":
                return [(400, "invalid configuration")], None
            return [(200, None)], lambda: self.reload(op["file"], op["reset"])
        raise ValueError(kind)

    def reload(self, new_file, reset):
        """ControlPlane.reload: unless reset, RuntimeState.merge of the running state into the
        state the new file describes, against the state the previous file described."""
        services, servers = file_state(new_file)
        fresh_services, fresh_servers = file_state(new_file)
        pools = set(servers)
        if reset:
            self.services, self.servers = services, servers
            self.file = new_file
            self.base_services, self.base_servers = fresh_services, fresh_servers
            self.prune_history(pools)
            return
        for name, live in self.services.items():
            fresh = list(services[name])
            old = self.base_services.get(name)
            for i in range(4):
                if old is not None and old[i] == live[i]:
                    continue
                value = live[i]
                if i == 0:
                    ok = value in pools
                elif i == 1:
                    ok = value is None or value in pools
                elif i == 2:
                    ok = value is None or value[0] in pools
                else:
                    ok = all(r[3] in pools for r in value)
                if ok:
                    fresh[i] = value
            if fresh[2] is not None and fresh[2][0] == fresh[0]:
                fresh[2] = None
            if fresh[1] is not None and fresh[1] == fresh[0]:
                # A kept standby equal to the active pool gives way to the file's (RuntimeState.merge).
                fresh[1] = None if services[name][1] == fresh[0] else services[name][1]
            services[name] = tuple(fresh)
        for pool, entries in self.servers.items():
            if pool not in servers:
                continue
            for name, live in entries.items():
                old = self.base_servers.get(pool, {}).get(name)
                fresh = servers[pool].get(name)
                if fresh is not None:
                    if old != live:
                        servers[pool][name] = (live[0] if old is None or old[0] != live[0] else fresh[0],
                                               live[1] if old is None or old[1] != live[1] else fresh[1],
                                               None, live[3])
                elif live[2] is not None:
                    servers[pool][name] = live
        self.file = new_file
        self.services, self.servers = services, servers
        self.base_services, self.base_servers = fresh_services, fresh_servers
        self.prune_history(pools)

    def prune_history(self, pools):
        """ControlPlane.prune: earlier routings that name a pool the file no longer has are dropped."""
        def routes_only_to(service):
            active, standby, canary, rules = service
            return (active in pools and (standby is None or standby in pools)
                    and (canary is None or canary[0] in pools) and all(r[3] in pools for r in rules))
        for name in self.history:
            self.history[name] = [h for h in self.history[name] if routes_only_to(h)]


def valid_name(text):
    """FieldRules.isValidName: pool and server names."""
    return isinstance(text, str) and 0 < len(text) <= 128 and re.fullmatch(r"[A-Za-z0-9_.:-]+", text) is not None


def valid_duration(text):
    """DurationText.parse for the durations the generator writes: "30s", "1h", "250ms"."""
    return re.fullmatch(r"\d+(?:\.\d+)?(?:ms|s|m|h)?", text) is not None


# MARK: - The operation generator


class Generator:
    """A seeded sequence of operations. The draws never depend on the proxy's answers, so the
    same seed sends the same operations (their outcomes may vary with timing)."""

    KINDS = ("add", "drain", "undrain", "remove", "weight", "flip", "canary", "rules", "rollback",
             "lock", "unlock", "reload", "reload-invalid")
    WEIGHTS = (14, 8, 12, 10, 9, 8, 10, 7, 4, 3, 3, 4, 2)
    SERVER_WEIGHTS = (0, 1, 5, 50, 100, 100, 200, 1000)
    CANARY_WEIGHTS = ("0%", "0.01%", "1%", "2.5%", "5%", "10%", "25%", "50%", "100%", 10, 0.5, "0.25%")

    def __init__(self, seed, without=()):
        self.rng = random.Random(seed)
        self.queued = []
        self.weights = [0 if kind in without else w for kind, w in zip(self.KINDS, self.WEIGHTS)]

    def server(self):
        r = self.rng
        pool = r.choices(POOLS, (3, 3, 3, 2))[0]
        if r.random() < 0.03:
            return pool, "ghost"
        return pool, f"{pool}-{r.randint(1, SLOTS[pool])}"

    def pool_name(self):
        r = self.rng
        return "purple" if r.random() < 0.04 else r.choice(POOLS)

    def service(self):
        r = self.rng
        return "nosuch" if r.random() < 0.04 else r.choice(("web", "api"))

    def file(self):
        r = self.rng
        pools = []
        for pool in POOLS:
            keep = r.random() < 0.5 if pool == "orange" else True
            entries = []
            for i in range(1, SLOTS[pool] + 1):
                included = r.random() < 0.7
                weight = r.choice((100, 100, 50, 200, 0, 10))
                if included:
                    entries.append((f"{pool}-{i}", weight))
            if keep:
                pools.append((pool, entries))
        return FileConfig(pools)

    def next(self):
        if self.queued:
            return self.queued.pop()
        r = self.rng
        kind = r.choices(self.KINDS, self.weights)[0]
        use_token = r.random() < 0.8
        m = r.random()
        if_match = "current" if m < 0.08 else "stale" if m < 0.11 else None
        op = {"kind": kind, "use_token": use_token, "if_match": if_match}
        if kind in ("drain", "undrain", "weight", "remove"):
            pool, server = self.server()
            op.update(pool=pool, server=server, path=f"/v1/pools/{pool}/servers/{server}")
            op["method"] = "DELETE" if kind == "remove" else "PUT"
            x = r.random()
            if kind == "drain":
                op["body"] = {"state": "maint" if x < 0.3 else "drain"}
            elif kind == "undrain":
                op["body"] = {"state": "ready"}
            elif kind == "weight":
                w = r.choice(self.SERVER_WEIGHTS)
                op["body"] = {"weight": 1001 if x < 0.04 else w}
                if 0.04 <= x < 0.1:
                    op["body"]["state"] = "paused"
        elif kind == "add":
            pool, server = self.server()
            x = r.random()
            w = r.choice(self.SERVER_WEIGHTS)
            body = {"name": server, "address": None}
            if x < 0.03 or server == "ghost":
                body["name"] = "bad name!"
            elif x < 0.06:
                body["address"] = "nowhere"
            if r.random() < 0.5:
                body["weight"] = w
            if r.random() < 0.15:
                body["state"] = r.choice(("drain", "maint"))
            op.update(method="POST", pool=pool, path=f"/v1/pools/{pool}/servers", body=body, slot=server)
        elif kind == "flip":
            service = self.service()
            to = self.pool_name() if r.random() < 0.4 else None
            op.update(method="POST", service=service, path=f"/v1/services/{service}/flip",
                      body={"to": to} if to else None)
        elif kind == "canary":
            service = self.service()
            x = r.random()
            weight = "150%" if x < 0.02 else "5" if x < 0.04 else r.choice(self.CANARY_WEIGHTS)
            body = {"weight": weight}
            pool = self.pool_name()
            if r.random() < 0.85:
                body["pool"] = pool
            s = r.random()
            if s < 0.1:
                body["sticky"] = None
            elif s < 0.25:
                body["sticky"] = {"header": "X-User"}
            elif s < 0.35:
                body["sticky"] = {"cookie": "sw_canary"}
            elif s < 0.4:
                body["sticky"] = {"client_ip": True}
            op.update(method="PUT", service=service, path=f"/v1/services/{service}/canary", body=body)
        elif kind == "rules":
            service = self.service()
            rules = []
            for _ in range(r.randint(0, 3)):
                x = r.random()
                value = r.choice(ROUTE_VALUES)
                pool = self.pool_name()
                if x < 0.1:
                    rules.append({"cookie": "canary", "value": value, "pool": pool})
                elif x < 0.13:
                    rules.append({"header": "X-Route", "value": value})  # no pool: refused
                else:
                    rules.append({"header": r.choice(("X-Route", "x-route", "X-Other")), "value": value, "pool": pool})
            op.update(method="PUT", service=service, path=f"/v1/services/{service}/rules", body={"rules": rules})
        elif kind == "rollback":
            service = self.service()
            op.update(method="POST", service=service, path=f"/v1/services/{service}/rollback")
            if r.random() < 0.15:
                # Walk back a long way now and then: past the 50 states kept, to "nothing to roll back".
                for _ in range(r.randint(5, 60)):
                    self.queued.append(dict(op, use_token=True, if_match=None))
        elif kind == "lock":
            ttl = "ten minutes" if r.random() < 0.05 else "1h"
            op.update(method="POST", path="/v1/lock", body={"owner": "chaos", "ttl": ttl, "reason": "model test"})
        elif kind == "unlock":
            force = r.random() < 0.1
            op.update(method="DELETE", path="/v1/lock?force=true" if force else "/v1/lock", force=force)
        elif kind == "reload":
            reset = r.random() < 0.1
            op.update(method="POST", path="/v1/reload?reset=true" if reset else "/v1/reload", file=self.file(), reset=reset)
        elif kind == "reload-invalid":
            op.update(method="POST", path="/v1/reload",
                      defect=r.choice(("weight", "key", "address", "duplicate", "pool", "syntax")))
        return op


# MARK: - HTTP


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("switchyard", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class AdminUnreachable(Exception):
    pass


def admin(path, method, target, body=None, headers=None, timeout=30):
    """One admin request; returns (status, parsed JSON or None, raw text)."""
    connection = UnixHTTPConnection(path, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        h = dict(headers or {})
        if data is not None:
            h["Content-Type"] = "application/json"
        connection.request(method, target, body=data, headers=h)
        response = connection.getresponse()
        raw = response.read().decode("utf-8", "replace")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return response.status, parsed, raw
    except (OSError, http.client.HTTPException) as e:
        raise AdminUnreachable(f"{method} {target}: {type(e).__name__}: {e}")
    finally:
        connection.close()


class ProtocolError(Exception):
    pass


TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9]\d\d) [^\r\n]*")


class Client:
    """A strict HTTP/1.1 client on one keep-alive connection: every answer must have a valid
    status line, valid header lines, and exact framing (Content-Length or chunked)."""

    def __init__(self, port, timeout):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.buffer = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer = b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed before the response was complete")
        self.buffer += chunk

    def line(self):
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > 65536:
                raise ProtocolError("response line too long")
            self.fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def request(self, path, headers):
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        text = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.sock.sendall(text.encode())
        status_line = self.line()
        m = STATUS_LINE.fullmatch(status_line)
        if not m:
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        status = int(m.group(1))
        fields = {}
        while True:
            line = self.line()
            if not line:
                break
            name, sep, value = line.partition(b":")
            if not sep or not TOKEN.fullmatch(name):
                raise ProtocolError(f"bad header line {line[:80]!r}")
            key = name.decode().lower()
            if key in fields and key in ("content-length", "transfer-encoding"):
                raise ProtocolError(f"two {key} headers")
            fields[key] = value.strip().decode("latin-1")
        if status < 200:
            raise ProtocolError(f"unexpected interim response {status}")
        if "transfer-encoding" in fields:
            if fields["transfer-encoding"].lower() != "chunked" or "content-length" in fields:
                raise ProtocolError(f"bad framing: {fields}")
            body = b""
            while True:
                size_line = self.line().split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_line):
                    raise ProtocolError(f"bad chunk size {size_line[:20]!r}")
                size = int(size_line, 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                while len(self.buffer) < size + 2:
                    self.fill()
                if self.buffer[size:size + 2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                body += self.buffer[:size]
                self.buffer = self.buffer[size + 2:]
        elif "content-length" in fields:
            if not fields["content-length"].isdigit():
                raise ProtocolError(f"bad Content-Length {fields['content-length']!r}")
            n = int(fields["content-length"])
            while len(self.buffer) < n:
                self.fill()
            body, self.buffer = self.buffer[:n], self.buffer[n:]
        else:
            raise ProtocolError(f"response {status} without Content-Length or chunked framing")
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, fields, body.decode("utf-8", "replace")


REQUEST_LIMIT = 50  # seconds: a checked request taking longer fails, and states older than this are let go


STUCK_AFTER = 15  # seconds beyond a request's own sleep: the proxy's threads are captured once


def load_client(port, seed, slow, stop, records, lock, in_flight, index):
    """Sends requests to random services with random rule and sticky headers and records each
    exchange with its send and receive times. Slow clients ask for /sleep/MS."""
    r = random.Random(seed)
    client = Client(port, timeout=30)
    sequence = 0
    while not stop.is_set():
        service = "web" if r.random() < 0.6 else "api"
        route = r.choice(ROUTE_VALUES) if r.random() < 0.6 else None
        user = f"u{r.randint(0, 9999)}" if r.random() < 0.5 else None
        sequence += 1
        path = f"/sleep/{r.randint(300, 2500)}" if slow else f"/f/{sequence}"
        headers = {"Host": SERVICE_HOST[service]}
        if route:
            headers["X-Route"] = route
        if user:
            headers["X-User"] = user
        t0 = time.monotonic()
        # When this request should be answered by, for the watchdog (0: nothing in flight).
        in_flight[index] = t0 + (int(path.rsplit("/", 1)[1]) / 1000 if slow else 0)
        try:
            status, fields, body = client.request(path, headers)
            outcome = (status, fields.get("x-served-by"), body)
        except (OSError, ProtocolError) as e:
            client.close()
            outcome = (None, None, f"{type(e).__name__}: {e}")
        t1 = time.monotonic()
        with lock:
            records.append((t0, t1, service, route, user, path, outcome))
        in_flight[index] = 0
        if outcome[0] is None:
            time.sleep(0.05)  # the failure is recorded; do not spin against a dead proxy
        elif outcome[0] == 503:
            time.sleep(0.01)  # an emptied pool answers at once: do not flood the checks with it
    client.close()


def load_process(port, seed, fast, slow, stop, queue, in_flight):
    """The checking clients, in a process of their own so that they do not compete with the
    operations for Python's interpreter lock. Sends the records in batches; None ends them."""
    records, lock = [], threading.Lock()
    threads = [threading.Thread(target=load_client, args=(port, seed * 1000 + i, i >= fast, stop, records, lock, in_flight, i), daemon=True)
               for i in range(fast + slow)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        with lock:
            batch = records[:]
            del records[:]
        if batch:
            queue.put(batch)
    with lock:
        if records:
            queue.put(records[:])
    queue.put(None)


# MARK: - The run


class Run:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.binary = os.path.abspath(args.binary)
        self.directory = tempfile.mkdtemp(prefix="switchyard-chaos-")
        self.apps = {}
        self.addresses = {}
        self.proxy = None
        self.wrk = None
        self.port = None
        self.load = None
        self.load_queue = None
        self.load_done = False
        self.stuck_stacks = ""
        self.latencies = []
        self.fast_latencies = array.array("d")  # 8 bytes each: millions fit
        self.verify_seconds = 0.0
        self.outcomes_ops = collections.Counter()
        context = multiprocessing.get_context("fork")
        self.multiprocessing = context
        self.stop_load = context.Event()
        self.failures = []
        self.failure_kinds = collections.Counter()
        self.failure_examples = []
        self.fatal = None
        # States for the request checks: start (the change was sent), end (the next change was
        # acknowledged) and the routing view.
        self.view_starts, self.view_ends, self.views = [], [], []
        self.ever_unrouted = False  # some state left wrk's route (web, no headers) without a server
        self.checked = 0
        self.outlived = 0
        self.checked_by = collections.Counter()
        self.outcomes = collections.Counter()
        self.coverage = []
        self.ops_log = open(f"{self.directory}/operations.log", "w")
        self.recent = collections.deque(maxlen=20)

    def fail(self, text, kind=None):
        """Records a failure; kind groups failures of one cause in the report (default: the text)."""
        self.failures.append(text)
        self.failure_kinds[kind or text] += 1
        if self.failure_kinds[kind or text] == 1:
            self.failure_examples.append(text)
        if len(self.failures) <= 20:
            print(f"chaos-model: FAILURE: {text}", flush=True)

    # Processes

    def start_apps(self):
        for pool in POOLS:
            for i in range(1, SLOTS[pool] + 1):
                name = f"{pool}-{i}"
                ready = f"{self.directory}/{name}.port"
                self.apps[name] = subprocess.Popen(
                    [self.binary, "demo-app", "--name", name, "--listen", "127.0.0.1:0", "--ready-file", ready],
                    stdout=subprocess.DEVNULL, stderr=open(f"{self.directory}/{name}.err", "w"))
        deadline = time.monotonic() + 30
        for name in self.apps:
            ready = f"{self.directory}/{name}.port"
            while time.monotonic() < deadline:
                try:
                    text = open(ready).read().strip()
                    if text:
                        self.addresses[name] = f"127.0.0.1:{int(text)}"
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.02)
            else:
                raise RuntimeError(f"demo app {name} did not start within 30 s; see {self.directory}/{name}.err")

    def write_file(self, file, defect=None):
        path = f"{self.directory}/switchyard.yaml"
        with open(path + ".tmp", "w") as f:
            f.write(file.yaml(self.directory, self.addresses, defect))
        os.replace(path + ".tmp", path)

    def start_proxy(self, file):
        self.write_file(file)
        ready = f"{self.directory}/switchyard.ready"
        self.proxy = subprocess.Popen([self.binary, "run", "--config", f"{self.directory}/switchyard.yaml", "--ready-file", ready],
                                      stdout=open(f"{self.directory}/switchyard.out", "w"),
                                      stderr=open(f"{self.directory}/switchyard.err", "w"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proxy.poll() is not None:
                raise RuntimeError(f"switchyard exited at start: {self.stderr_tail()}")
            try:
                text = open(ready).read().strip()
                if text:
                    self.port = int(text.split("\n")[0].rsplit(":", 1)[1])
                    return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.02)
        raise RuntimeError("switchyard did not start within 30 s")

    def stderr_tail(self, lines=15):
        try:
            text = open(f"{self.directory}/switchyard.err", errors="replace").read().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def proxy_dead(self):
        code = self.proxy.poll()
        if code is None:
            return None
        return f"signal {-code}" if code < 0 else f"exit status {code}"

    def watchdog(self):
        """Captures the proxy's threads once, while a checked request is stuck: its stacks say where."""
        while not self.stop_load.is_set():
            time.sleep(1)
            due = [t for t in self.in_flight if t > 0]
            now = time.monotonic()
            if due and now - min(due) > STUCK_AFTER and self.proxy.poll() is None:
                self.stuck_stacks = self.stacks()
                where = f"in {self.directory}/switchyard.stacks" if self.stuck_stacks else "not captured: gdb is not installed"
                print(f"chaos-model: a checked request is {now - min(due):.0f} s overdue; switchyard's threads: {where}", flush=True)
                return

    def stacks(self):
        """The stuck proxy's threads, from gdb when it is installed (saved, and summarised)."""
        if shutil.which("gdb") is None:
            return ""
        path = f"{self.directory}/switchyard.stacks"
        try:
            with open(path, "w") as out:
                subprocess.run(["gdb", "-p", str(self.proxy.pid), "-batch", "-ex", "thread apply all bt 12"],
                               stdout=out, stderr=subprocess.STDOUT, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        # Each thread's first frames; the whole of it is in the file.
        lines = []
        for line in open(path, errors="replace").read().splitlines():
            if line.startswith("Thread ") or (line.startswith("#") and len(lines) and not lines[-1].startswith("#3 ")):
                lines.append(line[:240])
        return f" (threads in {path}):\n" + "\n".join(lines[:60])

    def stop_all(self):
        self.stop_load.set()
        if self.load is not None and self.load.is_alive():
            self.load.kill()
        for p in [self.wrk, self.proxy] + list(self.apps.values()):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)

    # State views for the request checks

    def push_view(self, model, start, previous_end):
        if self.views:
            self.view_ends[-1] = previous_end
        services, eligible = model.routing_view()
        self.views.append((services, eligible))
        self.view_starts.append(start)
        self.view_ends.append(INF)
        wrk_route = allowed_pools(services["web"], None, None)
        if not wrk_route or any(not eligible.get(pool) for pool in wrk_route):
            self.ever_unrouted = True

    def verify_records(self, wait=False):
        """Checks the requests recorded so far. With wait, until the load process has sent its last."""
        began = time.monotonic()
        cutoff = began - 2 * REQUEST_LIMIT
        end = time.monotonic() + 60
        while not self.load_done:
            try:
                batch = self.load_queue.get(timeout=1) if wait else self.load_queue.get_nowait()
            except queue_module.Empty:
                if wait and time.monotonic() < end:
                    continue
                break
            if batch is None:
                self.load_done = True
                break
            for record in batch:
                self.check_record(record)
        self.verify_seconds += time.monotonic() - began
        drop = bisect.bisect_left(self.view_ends, cutoff)
        drop = min(drop, len(self.views) - 1)
        if drop > 0:
            del self.view_starts[:drop], self.view_ends[:drop], self.views[:drop]

    def check_record(self, record):
        t0, t1, service, route, user, path, (status, served_by, body) = record
        self.checked += 1
        what = f"GET {path} Host {SERVICE_HOST[service]} X-Route {route} X-User {user}"
        if status is None:
            self.outcomes["no response"] += 1
            self.fail(f"{what}: no well-formed response ({body})", "a request got no well-formed response")
            return
        if t1 - t0 > REQUEST_LIMIT:
            self.outcomes["too slow"] += 1
            self.fail(f"{what}: the answer took {t1 - t0:.0f} s", f"a request took longer than {REQUEST_LIMIT} s")
            return
        if not path.startswith("/sleep/"):
            self.fast_latencies.append(t1 - t0)
        lo = bisect.bisect_left(self.view_ends, t0)
        hi = bisect.bisect_right(self.view_starts, t1)
        candidates = self.views[lo:hi]
        if not candidates:
            self.fail(f"{what}: no known state covers the request's lifetime (internal error of the test)", "no state known")
            return
        if status == 200:
            name = body.split(" ", 1)[0]
            expected = f"{name} slept {path.split('/')[-1]} ms\n" if path.startswith("/sleep/") else f"{name} GET {path}\n"
            pool = name.rsplit("-", 1)[0]
            if name not in self.addresses or body != expected or served_by != name:
                self.outcomes["bad body"] += 1
                self.fail(f"{what}: 200 with an unexpected body {body[:100]!r} (X-Served-By {served_by})", "a 200 with a wrong body")
                return
            self.outcomes["200"] += 1
            self.checked_by[name] += 1
            for services, eligible in candidates:
                if pool in allowed_pools(services[service], route, user) and name in eligible.get(pool, ()):
                    last_services, last_eligible = candidates[-1]
                    if name not in last_eligible.get(pool, ()) or pool not in allowed_pools(last_services[service], route, user):
                        self.outlived += 1  # its server or pool left the route while it was in flight
                    return
            self.fail(f"{what}: answered by {pool}/{name}, which no state in effect during the request "
                      f"({len(candidates)} state(s)) routed it to; routes then: {describe(candidates, service, route, user)}",
                      misrouted_kind("answered by a server or pool it was not routed to", candidates, service))
            return
        if status == 503:
            m = re.search(r"no server available in pool (\S+)", body)
            self.outcomes["503"] += 1
            if m:
                pool = m.group(1)
                for services, eligible in candidates:
                    if pool in allowed_pools(services[service], route, user) and pool in eligible and not eligible[pool]:
                        return
            self.fail(f"{what}: 503 {body.strip()[:120]!r}, but every state in effect during the request had a server "
                      f"for its route; routes then: {describe(candidates, service, route, user)}",
                      misrouted_kind("a 503 although the route had a server", candidates, service))
            return
        self.outcomes[str(status)] += 1
        self.fail(f"{what}: status {status} {body.strip()[:160]!r}", f"a request answered {status}")

    # Admin operations

    def status(self):
        code, parsed, raw = admin(self.socket, "GET", "/v1/status")
        if code != 200 or not isinstance(parsed, dict):
            raise AdminUnreachable(f"GET /v1/status answered {code}: {raw[:200]}")
        return parsed

    def compare_status(self, model, when):
        status = self.status()
        actual = normalize_status(status)
        expected = model.expected_status()
        if actual != expected:
            self.fail(f"/v1/status {when} differs from the model:\n" + diff(expected, actual))
            return None
        return status

    def sample_coverage(self, status, model):
        """How many servers taking requests have some in flight now (reported, not judged)."""
        services, eligible = model.routing_view()
        routed = set()
        for rules, canary, active, _ in services.values():
            routed.update(p for _, _, p in rules)
            routed.update([canary[0]] if canary else [])
            routed.update([active] if active else [])
        ready = busy = 0
        for name, pool in status.get("pools", {}).items():
            if name not in routed:
                continue
            for s in pool.get("servers", []):
                if s.get("state") == "ready" and s.get("weight", 0) > 0:
                    ready += 1
                    busy += 1 if s.get("active_requests", 0) > 0 else 0
        if ready:
            self.coverage.append(busy / ready)

    def execute(self, index, op, model):
        """Sends one operation, checks the answer against the model, and updates the model."""
        kind = op["kind"]
        headers = {"X-Switchyard-Actor": f"chaos-{index}"}
        if op["use_token"] and model.lock is not None:
            headers["X-Switchyard-Lock"] = model.lock
        if op["if_match"] == "current":
            headers["If-Match"] = str(model.generation)
        elif op["if_match"] == "stale":
            headers["If-Match"] = str(model.generation - 1)
        body = op.get("body")
        if kind == "add":
            body = dict(body)
            if body["address"] is None:
                body["address"] = self.addresses[op["slot"]] if op["slot"] in self.addresses else "127.0.0.1:1"
        if kind == "reload":
            self.write_file(op["file"])
        elif kind == "reload-invalid":
            self.write_file(model.file, defect=op["defect"])
        expected, apply = model.predict(dict(op, body=body))
        sent = time.monotonic()
        code, parsed, raw = admin(self.socket, op["method"], op["path"], body, headers)
        acknowledged = time.monotonic()
        self.latencies.append(acknowledged - sent)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if kind in ("reload", "reload-invalid") and (code, error) != (200, None):
            self.write_file(model.file)  # the running configuration's file again
        line = f"{index} {op['method']} {op['path']} {json.dumps(body) if body is not None else ''} {headers} -> {code} {error or ''}"
        self.ops_log.write(line + "\n")
        self.recent.append(line)
        self.outcomes_ops[f"{kind} {code}" + (f" {error}" if error else "")] += 1
        if not isinstance(parsed, dict):
            self.fail(f"operation {index} ({kind}): the answer is not a JSON object: {code} {raw[:200]!r}")
            return False
        if (code, error) not in expected:
            self.fail(f"operation {index}: {op['method']} {op['path']} {json.dumps(body)}: answered {code} {error!r} "
                      f"({parsed.get('detail', '')[:300]}), the model expected {' or '.join(f'{c} {e!r}' for c, e in expected)}")
            return False
        if code != 200:
            if not isinstance(parsed.get("detail"), str) or not parsed["detail"]:
                self.fail(f"operation {index}: error answer without a detail: {raw[:200]}")
                return False
            return True
        if kind == "lock":
            token = parsed.get("token")
            if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
                self.fail(f"operation {index}: lock answer without a token: {raw[:200]}")
                return False
            if model.lock is not None and token != model.lock:
                self.fail(f"operation {index}: renewing the lock changed its token")
                return False
            model.lock = token
            return True
        if kind == "unlock":
            apply()
            return True
        apply()
        model.generation += 1
        if parsed.get("generation") != model.generation:
            self.fail(f"operation {index} ({kind}): answered generation {parsed.get('generation')}, the model expected {model.generation}")
            return False
        self.push_view(model, sent, acknowledged)
        return True

    def main(self):
        args = self.args
        self.socket = f"{self.directory}/admin.sock"
        began = time.monotonic()
        self.start_apps()
        initial = FileConfig([(pool, [(f"{pool}-{i}", 100) for i in range(1, SLOTS[pool] + 1) if i <= 3])
                              for pool in POOLS])
        model = Model(initial, self.addresses)
        self.start_proxy(initial)
        self.push_view(model, -INF, -INF)
        if self.compare_status(model, "at start") is None:
            return
        # wrk for throughput on the default route; checking clients for what wrk cannot judge.
        self.wrk = None if args.wrk_connections == 0 else subprocess.Popen(["wrk", "-t1", f"-c{args.wrk_connections}", "-d3600s", "--timeout", f"{REQUEST_LIMIT}s",
                                     "-H", "Host: web.test", f"http://127.0.0.1:{self.port}/"],
                                    stdout=open(f"{self.directory}/wrk.out", "w"), stderr=subprocess.STDOUT)
        self.load_queue = self.multiprocessing.Queue()
        self.in_flight = self.multiprocessing.Array("d", args.fast_clients + args.slow_clients, lock=False)
        self.load = self.multiprocessing.Process(target=load_process, daemon=True,
                                                 args=(self.port, self.seed, args.fast_clients, args.slow_clients, self.stop_load,
                                                       self.load_queue, self.in_flight))
        self.load.start()
        threading.Thread(target=self.watchdog, daemon=True).start()
        time.sleep(1.0)  # slow requests under way before the first change
        generator = Generator(self.seed, args.without)
        deadline = began + args.max_seconds
        done = 0
        ops_began = time.monotonic()
        try:
            for index in range(1, args.operations + 1):
                op = generator.next()
                if time.monotonic() > deadline:
                    self.fail(f"stopped after {done} of {args.operations} operations: --max-seconds {args.max_seconds} passed")
                    break
                ok = self.execute(index, op, model)
                done = index
                dead = self.proxy_dead()
                if dead:
                    self.fatal = f"switchyard died ({dead}) at operation {index}"
                    break
                if not ok:
                    break
                if index % 50 == 0:
                    status = self.compare_status(model, f"after operation {index}")
                    if status is None:
                        break
                    self.sample_coverage(status, model)
                if index % 100 == 0:
                    self.verify_records()
                if args.progress and index % args.progress == 0:
                    print(f"chaos-model: {index} operations, {self.checked} requests checked, "
                          f"{len(self.failures)} failure(s), {time.monotonic() - ops_began:.0f} s", flush=True)
        except AdminUnreachable as e:
            dead = self.proxy_dead()
            self.fatal = f"switchyard died ({dead}) at operation {done + 1}" if dead else f"the admin API did not answer: {e}"
            if not dead:
                self.fatal += self.stacks() or " (install gdb to capture its threads)"
        ops_seconds = time.monotonic() - ops_began
        self.operations_done = done
        # Stop the load, then judge what is left.
        self.stop_load.set()
        if self.wrk is not None and self.wrk.poll() is None:
            self.wrk.send_signal(signal.SIGINT)
            try:
                self.wrk.wait(15)
            except subprocess.TimeoutExpired:
                self.wrk.kill()
        self.wrk_report = open(f"{self.directory}/wrk.out").read() if self.wrk is not None else ""
        wrk = parse_wrk(self.wrk_report)
        self.wrk_figures = wrk
        if self.fatal is None:
            dead = self.proxy_dead()
            if dead:
                self.fatal = f"switchyard died ({dead}) after the operations"
        try:
            if self.fatal is None:
                self.finish(model, wrk)
        except AdminUnreachable as e:
            dead = self.proxy_dead()
            self.fatal = f"switchyard died ({dead}) after the operations" if dead else f"the admin API did not answer: {e}"
        self.report(ops_seconds, time.monotonic() - began)

    def finish(self, model, wrk):
        """After the load: the last request checks, counters back to zero, the final status, a clean stop."""
        self.verify_records(wait=True)
        if not self.load_done:
            self.fail("the checking clients did not finish within 60 s of the end of the operations")
        if wrk["errors"]:
            self.fail(f"wrk saw socket errors or timeouts: {wrk['error_line']}")
        if wrk["non2xx"] and not self.ever_unrouted:
            self.fail(f"wrk saw {wrk['non2xx']} non-2xx answers, but no state left its route without a server")
        # Nothing is in flight any more: every server must say so.
        end = time.monotonic() + 10
        busy = []
        while time.monotonic() < end:
            status = self.status()
            busy = [f"{p}/{s['name']}={s['active_requests']}" for p, pool in status["pools"].items()
                    for s in pool["servers"] if s.get("active_requests")]
            if not busy:
                break
            time.sleep(0.2)
        if busy:
            self.fail(f"active_requests stays above 0 after the load stopped: {', '.join(busy)}")
        self.compare_status(model, "at the end")
        self.proxy.send_signal(signal.SIGTERM)
        try:
            code = self.proxy.wait(20)
            if code != 0:
                self.fail(f"switchyard exited with {code} after SIGTERM: {self.stderr_tail(5)}")
        except subprocess.TimeoutExpired:
            self.fail("switchyard did not stop within 20 s of SIGTERM")

    def report(self, ops_seconds, seconds):
        ok = self.fatal is None and not self.failures
        wrk = self.wrk_figures
        print(f"chaos-model: seed {self.seed}: {self.operations_done} of {self.args.operations} operations in {ops_seconds:.1f} s "
              f"({self.operations_done / max(ops_seconds, 0.001):.0f}/s; {seconds:.1f} s in all)")
        print(f"chaos-model: requests checked: {self.checked} "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(self.outcomes.items()))}); "
              f"servers that answered: {len(self.checked_by)} of {len(self.addresses)}; "
              f"answered after their server or pool had left the route: {self.outlived}")
        print(f"chaos-model: wrk: {wrk['requests']} requests, {wrk['non2xx']} non-2xx, "
              f"{wrk['error_line'] or 'no socket errors'}")
        if self.latencies:
            ordered = sorted(self.latencies)
            print(f"chaos-model: admin answers: p50 {1000 * ordered[len(ordered) // 2]:.1f} ms, "
                  f"p99 {1000 * ordered[int(len(ordered) * 0.99)]:.1f} ms, max {ordered[-1]:.1f} s; "
                  f"checking requests took {self.verify_seconds:.1f} s")
        if self.fast_latencies:
            ordered = sorted(self.fast_latencies)
            slow = sum(1 for t in ordered if t > 5)
            print(f"chaos-model: checked fast requests took: p50 {1000 * ordered[len(ordered) // 2]:.1f} ms, "
                  f"p99 {1000 * ordered[int(len(ordered) * 0.99)]:.1f} ms, max {ordered[-1]:.1f} s; {slow} over 5 s")
        if self.coverage:
            print(f"chaos-model: servers taking requests that had some in flight, sampled every 50 operations: "
                  f"mean {100 * sum(self.coverage) / len(self.coverage):.0f}%, lowest {100 * min(self.coverage):.0f}%")
        by_kind = collections.defaultdict(list)
        for key, count in sorted(self.outcomes_ops.items()):
            kind, rest = key.split(" ", 1)
            by_kind[kind].append(f"{rest} x{count}")
        for kind in Generator.KINDS:
            if by_kind.get(kind):
                print(f"chaos-model:   {kind}: {'; '.join(by_kind[kind])}")
        if self.stuck_stacks:
            print("chaos-model: switchyard while a request was stuck" + self.stuck_stacks)
        if self.fatal:
            print(f"chaos-model: FATAL: {self.fatal}")
            print("chaos-model: switchyard's last lines on stderr:\n" + self.stderr_tail())
        if self.failures:
            print(f"chaos-model: {len(self.failures)} failure(s), by cause:")
            for kind, count in self.failure_kinds.most_common(10):
                print(f"  {count} x {kind.splitlines()[0][:200]}")
            print("chaos-model: the first of each cause:")
            for f in self.failure_examples[:10]:
                print("  - " + f.replace("\n", "\n    "))
        if not ok:
            print("chaos-model: the last operations before it (operation, request, headers -> answer):")
            for line in self.recent:
                print("    " + line)
            print(f"chaos-model: every operation and the logs are in {self.directory}")
            print(f"chaos-model: to repeat: scripts/chaos-model {self.seed} {self.args.operations}")
        print(f"chaos-model: {'PASS' if ok else 'FAIL'} (seed {self.seed})", flush=True)
        self.passed = ok


def allowed_pools(route, header_value, user):
    """The pools a state sends a request to: the first matching header rule, else the canary
    (decided by the sticky header's bucket when it is X-User and present) and the active pool."""
    rules, canary, active, _ = route
    for name, value, pool in rules:
        if name == "x-route" and header_value is not None and value == header_value:
            return (pool,)
    stable = (active,) if active is not None else ()
    if canary is not None:
        pool, bp, sticky = canary
        if sticky is not None and sticky[0] == "header" and sticky[1].lower() == "x-user" and user is not None:
            return (pool,) if fnv_bucket(user) < bp else stable
        return (pool,) if bp >= 10000 else (pool,) + stable
    return stable


def misrouted_kind(text, candidates, service):
    """Groups misrouted requests by whether a state in effect named a pool the file no longer has."""
    if any(services[service][2] is None for services, _ in candidates):
        return text + ", while the service's active pool was one the configuration no longer has"
    return text


def describe(candidates, service, route, user):
    seen = []
    for services, eligible in candidates[-3:]:
        r = services[service]
        pools = allowed_pools(r, route, user)
        text = "active " + (r[2] or f"{r[3]} (not in the configuration)") + (f", canary {r[1][0]} {r[1][1] / 100}%" if r[1] else "")
        text += "; to " + (", ".join(f"{p} [{' '.join(sorted(eligible.get(p, ())))}]" for p in pools) or "no pool")
        if text not in seen:
            seen.append(text)
    return " | ".join(seen) or "none"


def normalize_status(status):
    services = {}
    for name, s in status.get("services", {}).items():
        canary = s.get("canary")
        if canary is not None:
            sticky = canary.get("sticky")
            if sticky is not None:
                key = next(iter(sticky))
                sticky = ("client_ip",) if key == "client_ip" else (key, sticky[key])
            canary = {"pool": canary.get("pool"), "weight": parse_percent(str(canary.get("weight"))), "sticky": sticky}
        services[name] = {"active": s.get("active"), "standby": s.get("standby"), "canary": canary,
                          "rules": [[r.get("kind"), r.get("name"), r.get("value"), r.get("pool")] for r in s.get("rules", [])]}
    pools = {name: [[s.get("name"), s.get("address"), s.get("weight"), s.get("state")] for s in p.get("servers", [])]
             for name, p in status.get("pools", {}).items()}
    return {"generation": status.get("generation"), "locked": status.get("lock") is not None,
            "services": services, "pools": pools}


def diff(expected, actual, path=""):
    lines = []
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            if key not in actual:
                lines.append(f"{path}/{key}: model {json.dumps(expected[key])}, proxy has none")
            elif key not in expected:
                lines.append(f"{path}/{key}: proxy {json.dumps(actual[key])}, model has none")
            elif expected[key] != actual[key]:
                lines += diff(expected[key], actual[key], f"{path}/{key}")
        return lines if path else "\n".join(lines)
    lines.append(f"{path}: model {json.dumps(expected)}, proxy {json.dumps(actual)}")
    return lines if path else "\n".join(lines)


def parse_wrk(text):
    figures = {"requests": 0, "non2xx": 0, "errors": 0, "error_line": ""}
    for line in text.splitlines():
        m = re.search(r"(\d+) requests in", line)
        if m:
            figures["requests"] = int(m.group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", line)
        if m:
            figures["non2xx"] = int(m.group(1))
        if "Socket errors" in line:
            figures["error_line"] = line.strip()
            figures["errors"] = sum(int(n) for n in re.findall(r"\b(\d+)\b", line))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, help="the switchyard binary under test")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop (and fail) after this long")
    parser.add_argument("--wrk-connections", type=int, default=4)
    parser.add_argument("--fast-clients", type=int, default=2)
    parser.add_argument("--slow-clients", type=int, default=12)
    parser.add_argument("--without", type=lambda text: [k for k in text.split(",") if k], default=[],
                        help="leave out these kinds of operation (comma-separated), e.g. to look past a known failure")
    parser.add_argument("--progress", type=int, default=0, help="print a progress line every N operations")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory even when the run passes")
    args = parser.parse_args()
    unknown = [k for k in args.without if k not in Generator.KINDS]
    if unknown:
        parser.error(f"--without: unknown kind {', '.join(unknown)}; kinds: {', '.join(Generator.KINDS)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    print(f"chaos-model: seed {args.seed}, {args.operations} operations, binary {args.binary}"
          + (f", without {', '.join(args.without)}" if args.without else ""), flush=True)
    run = Run(args)
    run.passed = False
    try:
        run.main()
    except (RuntimeError, AdminUnreachable) as e:
        print(f"chaos-model: FAIL: {e}", flush=True)
    finally:
        run.stop_all()
        run.ops_log.close()
        if run.passed and not args.keep and not run.stuck_stacks:
            shutil.rmtree(run.directory, ignore_errors=True)
    sys.exit(0 if run.passed else 1)


if __name__ == "__main__":
    main()
