"""Benchmark driver for scripts/bench. Starts every process itself and stops them by PID."""
import os, re, signal, socket, statistics, subprocess, sys, tempfile, time, resource

mode, binary = sys.argv[1], os.path.abspath(sys.argv[2])
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
work = tempfile.mkdtemp(prefix="switchyard-bench-")
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "stderr.log"), "a"), **kw)
    procs.append(p); return p

def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError: time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}; see {work}/stderr.log")

def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try: p.wait(5)
        except subprocess.TimeoutExpired: p.kill()

BODY = "x" * int(os.environ.get("BENCH_BODY_BYTES", "100"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
# Workers of each proxy in the throughput mode (nginx worker_processes, HAProxy nbthread, Switchyard workers).
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
up_port, sy_port, ng_port, ha_port = free_port(), free_port(), free_port(), free_port()

def write(name, text):
    path = os.path.join(work, name); open(path, "w").write(text); return path

def nginx_conf(name, server_block):
    return write(name, f"""
worker_processes 1; daemon off; pid {work}/{name}.pid; error_log {work}/{name}.err warn;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path {work}/tmp_{name}; proxy_temp_path {work}/ptmp_{name};
  fastcgi_temp_path {work}/f_{name}; uwsgi_temp_path {work}/u_{name}; scgi_temp_path {work}/s_{name};
  {server_block} }}
""")

def start_upstream():
    # The body from a file: nginx's `return` takes at most about 4 KB of text. nginx's workers
    # run as another user, who must be able to read it.
    os.makedirs(os.path.join(work, "www"), exist_ok=True)
    os.chmod(work, 0o755); os.chmod(os.path.join(work, "www"), 0o755)
    os.chmod(write(os.path.join("www", "body"), BODY), 0o644)
    conf = nginx_conf("upstream.conf", f"""server {{ listen 127.0.0.1:{up_port} reuseport backlog=4096;
      location / {{ default_type text/plain; root {work}/www; try_files /body =404; }} }}""")
    upstream = start(["nginx", "-c", conf, "-p", work]); wait_port(up_port)
    answer = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", f"http://127.0.0.1:{up_port}/"],
                            capture_output=True, text=True).stdout
    if answer != f"200 {len(BODY)}":
        raise SystemExit(f"the upstream answered {answer!r}, not 200 with {len(BODY)} bytes; see {work}")
    return upstream

# BENCH_FORWARDING=1: nginx and HAProxy add the fields Switchyard always adds (X-Forwarded-For,
# -Proto and -Host and a generated X-Request-Id to the request, the X-Request-Id to the response),
# so all three do the same work; otherwise they forward the request as it came.
FORWARDING = os.environ.get("BENCH_FORWARDING") == "1"
NGINX_FORWARDING = """proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Request-Id $request_id; add_header X-Request-Id $request_id;""" if FORWARDING else ""
HAPROXY_FORWARDING = """option forwardfor
  unique-id-format %[uuid()]
  unique-id-header X-Request-Id
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-response set-header X-Request-Id %[unique-id]""" if FORWARDING else ""

def start_proxies(header_timeout=None):
    """header_timeout: the same request-head timeout for all three (each keeps its default otherwise)."""
    conf = nginx_conf("proxy.conf", f"""upstream app {{ server 127.0.0.1:{up_port}; keepalive 128; }}
      {f"client_header_timeout {header_timeout};" if header_timeout else ""}
      server {{ listen 127.0.0.1:{ng_port} backlog=4096; location / {{ proxy_pass http://app;
        proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; {NGINX_FORWARDING} }} }}""")
    if WORKERS > 1:
        text = open(conf).read().replace("worker_processes 1;", f"worker_processes {WORKERS};")
        open(conf, "w").write(text.replace(f"listen 127.0.0.1:{ng_port} backlog=4096;", f"listen 127.0.0.1:{ng_port} reuseport backlog=4096;"))
    started = {"nginx": start(["nginx", "-c", conf, "-p", work])}; wait_port(ng_port)
    ha = write("haproxy.cfg", f"""
global
  nbthread {WORKERS}
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  {f"timeout http-request {header_timeout}" if header_timeout else ""}
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{ha_port}
  {HAPROXY_FORWARDING}
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:{up_port}
""")
    started["haproxy"] = start(["haproxy", "-f", ha]); wait_port(ha_port)
    sy = write("switchyard.yaml", f"""
workers: {WORKERS}
listeners: [{{ bind: 127.0.0.1:{sy_port} }}]
pools: {{ app: {{ servers: [{{ address: 127.0.0.1:{up_port} }}] }} }}
services: {{ web: {{ active: app }} }}
access_log: off
limits: {{ max_connections: 20000 }}
{f"timeouts: {{ client_header: {header_timeout} }}" if header_timeout else ""}
""")
    started["switchyard"] = start([binary, "run", "--config", sy]); wait_port(sy_port)
    return started

def wrk(port, extra=(), connections=None):
    connections = connections or CONNECTIONS
    out = subprocess.run(["wrk", f"-t{WORKERS}", f"-c{connections}", f"-d{DURATION}s", "--latency", *extra, f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v if unit == "ms" else v * 1000
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockerr = re.search(r"Socket errors: (.*)", out)
    return rps, lat(50), lat(99), (int(errors.group(1)) if errors else 0), (sockerr.group(1) if sockerr else "")

def throughput():
    upstream = start_upstream(); started = start_proxies()
    targets = [("direct", up_port), ("switchyard", sy_port), ("nginx", ng_port), ("haproxy", ha_port)]
    results = {name: [] for name, _ in targets}
    # CPU time (user + system) per request of the proxy, the upstream and wrk: what each request
    # costs, which the shared machine's load moves far less than the rate.
    cpu = {name: [] for name, _ in targets}
    for r in range(ROUNDS):
        order = targets[r % 2 * 0:] if r % 2 == 0 else [targets[0]] + list(reversed(targets[1:]))
        for name, port in order:
            proxy = started[name].pid if name in started else None
            before = (cpu_seconds(proxy) if proxy else 0.0, cpu_seconds(upstream.pid), children_cpu_seconds(), machine_idle_seconds())
            switches = (context_switches(proxy) if proxy else [0, 0]) + context_switches(upstream.pid)
            rps, p50, p99, bad, sockerr = wrk(port)
            after = (cpu_seconds(proxy) if proxy else 0.0, cpu_seconds(upstream.pid), children_cpu_seconds(), machine_idle_seconds())
            switched = [b - a for a, b in zip(switches, (context_switches(proxy) if proxy else [0, 0]) + context_switches(upstream.pid))]
            requests = rps * DURATION
            cpu[name].append(tuple((b - a) / requests * 1e6 for a, b in zip(before, after)) + tuple(x / requests for x in switched))
            results[name].append((rps, p50, p99))
            print(f"round {r+1} {name:<11} {rps:>10.0f} req/s  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms"
                  + (f"  non-2xx {bad}" if bad else "") + (f"  socket errors: {sockerr}" if sockerr else ""), flush=True)
    print(f"\nmedians over {ROUNDS} interleaved rounds (wrk -t{WORKERS} -c{CONNECTIONS} -d{DURATION}s, keep-alive, {len(BODY)}-byte body, {WORKERS} worker(s) each):")
    med = {}
    for name, _ in targets:
        rps = statistics.median(x[0] for x in results[name]); p50 = statistics.median(x[1] for x in results[name])
        p99 = statistics.median(x[2] for x in results[name]); med[name] = (rps, p50, p99)
        proxy_us, upstream_us, wrk_us, idle_us, vol, invol, up_vol, up_invol = (statistics.median(x[i] for x in cpu[name]) for i in range(8))
        print(f"  {name:<11} {rps:>10.0f} req/s  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms"
              f"  CPU per request: proxy {proxy_us:5.2f} us, upstream {upstream_us:5.2f} us, wrk {wrk_us:5.2f} us,"
              f" idle {idle_us:5.2f} us; sleeps per request: proxy {vol:.3f}, upstream {up_vol:.3f}"
              f" (preempted {invol:.3f}, {up_invol:.3f})")
    s = med["switchyard"]
    print(f"ratio switchyard/nginx   {s[0]/med['nginx'][0]:.2f}x req/s, p99 {s[2]:.3f} vs {med['nginx'][2]:.3f} ms")
    print(f"ratio switchyard/haproxy {s[0]/med['haproxy'][0]:.2f}x req/s, p99 {s[2]:.3f} vs {med['haproxy'][2]:.3f} ms")

def machine_idle_seconds():
    """Idle time of all cores together since boot (/proc/stat): what the load left unused."""
    fields = open("/proc/stat").readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")

def context_switches(pid):
    """Voluntary and involuntary context switches of a process's threads and its children's."""
    pids = [pid]
    try: pids += [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError: pass
    total = [0, 0]
    for p in pids:
        try: tasks = os.listdir(f"/proc/{p}/task")
        except OSError: continue
        for t in tasks:
            try: text = open(f"/proc/{p}/task/{t}/status").read()
            except OSError: continue
            total[0] += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
            total[1] += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
    return total

def children_cpu_seconds():
    """CPU time of this script's finished children: wrk's, once each run has been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

def cpu_seconds(pid):
    """User plus system CPU time of a process and its children (nginx's and HAProxy's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    def own(p):
        try: fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError: return 0.0
        return (int(fields[11]) + int(fields[12])) / ticks
    total = own(pid)
    try: children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError: children = []
    return total + sum(own(c) for c in children)

def rss_total_kib(pid):
    """RSS of a process and its children (nginx's and HAProxy's workers)."""
    try: children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError: children = []
    return rss_kib(pid) + sum(rss_kib(c) for c in children)

def slowloris():
    """20 keep-alive clients (wrk -t1 -c20) alone, then beside 5,000 connections that each
    trickle a 4 KB request head one byte every 2 s (scripts/slowloris.py). A real attack
    reaches long heads only after hours; to measure that state in seconds each connection
    sends the first 3 KB at once (SLOWLORIS_ARGS replaces these client options). All three
    proxies get the same 60 s request-head timeout (nginx's default), so no slow connection
    times out during a run."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 11000:
        raise SystemExit(f"the open-file limit is {hard}; 5,000 slow connections need about 11,000 (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(30000, hard) if hard != resource.RLIM_INFINITY else 30000, hard))
    conns = int(os.environ.get("SLOWLORIS_CONNECTIONS", "5000"))
    extra_args = os.environ.get("SLOWLORIS_ARGS", "--head-start 3072").split()
    settle = 4
    header_timeout = os.environ.get("SLOWLORIS_HEADER_TIMEOUT", "60s")
    start_upstream(); start_proxies(header_timeout=header_timeout)
    pids = {"switchyard": procs[-1].pid, "nginx": procs[-3].pid, "haproxy": procs[-2].pid}
    targets = [("switchyard", sy_port), ("nginx", ng_port), ("haproxy", ha_port)]
    # BENCH_BASELINE=path/to/an/older/switchyard adds it as a fourth target (before/after a change).
    if os.environ.get("BENCH_BASELINE"):
        base_port = free_port()
        conf = open(os.path.join(work, "switchyard.yaml")).read().replace(f":{sy_port}", f":{base_port}")
        p = start([os.path.abspath(os.environ["BENCH_BASELINE"]), "run", "--config", write("baseline.yaml", conf)])
        wait_port(base_port)
        pids["baseline"] = p.pid
        targets.insert(1, ("baseline", base_port))
    results = {name: {"alone": [], "slowloris": []} for name, _ in targets}
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowloris.py")
    print(f"slowloris: {conns} connections, 4096-byte head, one byte every 2 s each (client options: {' '.join(extra_args)}); "
          f"wrk -t1 -c20 -d{DURATION}s --latency; {ROUNDS} interleaved rounds", flush=True)
    for r in range(ROUNDS):
        order = targets if r % 2 == 0 else list(reversed(targets))
        for name, port in order:
            rps, p50, p99, bad, sockerr = wrk(port, connections=20)
            results[name]["alone"].append((rps, p50, p99))
            print(f"round {r+1} {name:<11} alone      {rps:>9.0f} req/s  p50 {p50:6.3f} ms  p99 {p99:7.3f} ms"
                  + (f"  non-2xx {bad}" if bad else "") + (f"  socket errors: {sockerr}" if sockerr else ""), flush=True)
            slow = subprocess.Popen([sys.executable, client, str(port), "--connections", str(conns),
                                     "--duration", str(DURATION + settle + 5), *extra_args],
                                    stdout=subprocess.PIPE, stderr=open(os.path.join(work, "stderr.log"), "a"), text=True)
            procs.append(slow)
            if slow.stdout.readline().strip() != "ready":
                raise SystemExit(f"the slowloris client did not start; see {work}/stderr.log")
            time.sleep(settle)
            cpu0, t0 = cpu_seconds(pids[name]), time.monotonic()
            rps, p50, p99, bad, sockerr = wrk(port, connections=20)
            cpu = (cpu_seconds(pids[name]) - cpu0) / (time.monotonic() - t0)
            rss = rss_total_kib(pids[name]) / 1024
            slow.terminate(); summary = slow.communicate(timeout=30)[0].strip().splitlines()[-1]
            results[name]["slowloris"].append((rps, p50, p99, cpu, rss))
            print(f"round {r+1} {name:<11} slowloris  {rps:>9.0f} req/s  p50 {p50:6.3f} ms  p99 {p99:7.3f} ms"
                  f"  proxy CPU {cpu*100:4.0f}%  RSS {rss:5.1f} MiB" + (f"  non-2xx {bad}" if bad else "")
                  + (f"  socket errors: {sockerr}" if sockerr else ""), flush=True)
            if os.environ.get("SLOWLORIS_VERBOSE"): print("   ", summary, flush=True)
            time.sleep(2)  # let the proxy close the slow connections before the next run
    print(f"\nmedians over {ROUNDS} interleaved rounds (wrk -t1 -c20 -d{DURATION}s, keep-alive, 1 worker each;"
          f" beside {conns} slowloris connections, request-head timeout {header_timeout}):")
    for name, _ in targets:
        a, s = results[name]["alone"], results[name]["slowloris"]
        med = lambda rows, k: statistics.median(x[k] for x in rows)
        print(f"  {name:<11} p99 alone {med(a, 2):6.3f} ms, with slowloris {med(s, 2):7.3f} ms;"
              f" p50 {med(a, 1):.3f} / {med(s, 1):.3f} ms; {med(a, 0):.0f} / {med(s, 0):.0f} req/s;"
              f" proxy CPU with slowloris {med(s, 3)*100:.0f}%, RSS {med(s, 4):.0f} MiB")

def slowloris_instructions():
    """User-space instructions a proxy spends per byte a slow client trickles, under callgrind
    (repeatable on a busy machine): 1,000 connections that each sent the first 3 KB of a
    4 KB head, then one byte every 2 s; a 5 s and a 25 s run, the difference divided by the
    bytes trickled in between, so start-up and connection set-up cancel out."""
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowloris.py")
    port = free_port()
    extra_args = os.environ.get("SLOWLORIS_ARGS", "--head-start 3072").split()
    def config(name):
        return write(f"{name}-slow.yaml", f"""
workers: 1
listeners: [{{ bind: 127.0.0.1:{port} }}]
pools: {{ app: {{ servers: [{{ address: 127.0.0.1:{up_port} }}] }} }}
services: {{ web: {{ active: app }} }}
access_log: off
limits: {{ max_connections: 20000 }}
timeouts: {{ client_header: 600s }}
""")
    targets = []
    for name, path in (("switchyard", binary), ("baseline", os.environ.get("BENCH_BASELINE"))):
        if not path: continue
        stripped = os.path.join(work, f"{name}-nodebug")   # valgrind cannot read Swift's DWARF
        subprocess.run(["strip", "--strip-debug", "-o", stripped, os.path.abspath(path)], check=True)
        targets.append((name, [stripped, "run", "--config", config(name)], signal.SIGINT))
    ng = nginx_conf("slow-cg.conf", f"""client_header_timeout 600s;
      server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ proxy_pass http://127.0.0.1:{up_port}; }} }}""")
    text = open(ng).read().replace("daemon off;", "daemon off; master_process off;")  # one process for callgrind
    open(ng, "w").write(text)
    targets.append(("nginx", ["nginx", "-c", ng, "-p", work], signal.SIGQUIT))
    print("user-space instructions per trickled byte (callgrind; 1,000 slow connections, "
          f"client options: {' '.join(extra_args)}; 25 s run minus 5 s run):", flush=True)
    for name, cmd, stop_signal in targets:
        runs = []
        for seconds in (5, 25):
            out = os.path.join(work, f"{name}-slow-{seconds}.callgrind")
            p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(port, timeout=180); time.sleep(1)
            text = subprocess.run([sys.executable, client, str(port), "--connections", "1000", "--ramp", "1",
                                   "--duration", str(seconds), *extra_args], capture_output=True, text=True).stdout
            sent = int(re.search(r"(\d+) bytes sent", text).group(1))
            p.send_signal(stop_signal); p.wait(120)
            total = next(int(l.split()[1]) for l in open(out) if l.startswith(("summary:", "totals:")))
            runs.append((sent, total, parsing_instructions(out)))
        (sent5, total5, parse5), (sent25, total25, parse25) = runs
        per_byte = lambda a, b: (b - a) / (sent25 - sent5)
        print(f"  {name:<11} {per_byte(total5, total25):8.0f}   of which head parsing {per_byte(parse5, parse25):6.0f}"
              f"   ({sent25 - sent5} bytes)", flush=True)
    print("(both move with how many bytes each wake-up finds, which depends on timing: compare within one run)")

def parsing_instructions(callgrind_file):
    """Instructions spent in the request-head parser (inclusive): Switchyard's parseRequest,
    nginx's request-line and header-line parsers."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", callgrind_file],
                          capture_output=True, text=True).stdout
    total = 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(.*?\)\s+\S*?:(\S+)", line)
        if not m: continue
        name = m.group(2)
        if "HTTPParserO12parseRequest" in name or name in ("ngx_http_parse_request_line", "ngx_http_parse_header_line"):
            total += int(m.group(1).replace(",", ""))
    return total

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1])
    return 0

def idle_connections(port, pid, total=False, count=10000):
    """Opens `count` keep-alive connections that each make one request (all sent before any
    answer is read, a burst), waits until they are idle, and returns the RSS then (KiB) and
    the bytes per connection above the RSS before; closes them."""
    rss = rss_total_kib if total else rss_kib
    base = rss(pid)
    conns = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        conns.append(s)
    for s in conns:
        data = b""
        while b"\r\n\r\n" not in data: data += s.recv(4096)
    # Idle from here on: the burst's spare buffers give their pages back within two trim
    # intervals (a second each), so the figure is what idle connections hold, not the burst.
    time.sleep(3)
    idle = rss(pid)
    for s in conns: s.close()
    return idle, (idle - base) * 1024 / count

def memory():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 10500:
        raise SystemExit(f"the open-file limit is {hard}; 10,000 connections need about 10,500 per process (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(30000, hard) if hard != resource.RLIM_INFINITY else 30000, hard))
    start_upstream()
    # The demo app streams large bodies; Switchyard in front of it with 1 worker.
    app_port = free_port()
    start([binary, "demo-app", "--name", "bench", "--listen", f"127.0.0.1:{app_port}"]); wait_port(app_port)
    sy = write("switchyard-mem.yaml", f"""
workers: 1
listeners: [{{ bind: 127.0.0.1:{sy_port} }}]
pools: {{ app: {{ servers: [{{ address: 127.0.0.1:{app_port} }}] }} }}
services: {{ web: {{ active: app }} }}
access_log: off
limits: {{ max_connections: 20000 }}
timeouts: {{ client_idle: 300s }}
""")
    p = start([binary, "run", "--config", sy])
    wait_port(sy_port)
    print(f"RSS at start: {rss_kib(p.pid)/1024:.1f} MiB")
    idle, per = idle_connections(sy_port, p.pid)
    print(f"RSS with 10,000 idle keep-alive client connections: {idle/1024:.1f} MiB "
          f"({per:.0f} bytes per connection above the start)")
    # nginx in front of the same app, measured the same way (its master and worker). HAProxy
    # is left out: it needs two descriptors per connection for its limit, more than the
    # 20,000 this machine allows a process.
    ng_mem_port = free_port()
    conf = nginx_conf("proxy-mem.conf", f"""upstream app {{ server 127.0.0.1:{app_port}; keepalive 128; }}
      server {{ listen 127.0.0.1:{ng_mem_port} backlog=4096; keepalive_timeout 300s; location / {{ proxy_pass http://app;
        proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
    ng = start(["nginx", "-c", conf, "-p", work]); wait_port(ng_mem_port)
    ng_idle, ng_per = idle_connections(ng_mem_port, ng.pid, total=True)
    print(f"nginx, the same way: {ng_idle/1024:.1f} MiB ({ng_per:.0f} bytes per connection above the start); "
          f"Switchyard/nginx {per/ng_per:.2f}x")
    ng.terminate()
    time.sleep(1)
    # 1 GiB download and upload, sampling RSS every 0.2 s.
    def sampled(cmd):
        c = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = 0
        while c.poll() is None:
            peak = max(peak, rss_kib(p.pid)); time.sleep(0.2)
        return peak, c.returncode
    gib = 1 << 30
    peak, rc = sampled(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{sy_port}/bytes/{gib}"])
    print(f"peak RSS while streaming a 1 GiB download: {peak/1024:.1f} MiB (curl exit {rc})")
    peak, rc = sampled(["bash", "-c", f"head -c {gib} /dev/zero | curl -s -o /dev/null -T - -H 'Content-Length: {gib}' http://127.0.0.1:{sy_port}/echo"])
    print(f"peak RSS while streaming a 1 GiB upload (echoed back): {peak/1024:.1f} MiB (curl exit {rc})")

def callgrind_instructions(name, cmd, port, stop_signal, scheme="http"):
    """User-space instructions per proxied request under callgrind: repeatable whatever else
    the machine is doing (wall-clock figures on a shared 2-core machine vary by 20%)."""
    results = []
    for load in (False, True):
        out = os.path.join(work, f"{name}-{int(load)}.callgrind")
        p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, timeout=60); time.sleep(1)
        requests = 0
        if load:
            text = subprocess.run(["wrk", "-t1", "-c10", "-d6s", f"{scheme}://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
            requests = int(re.search(r"(\d+) requests in", text).group(1))
        p.send_signal(stop_signal); p.wait(60)
        total = next(int(l.split()[1]) for l in open(out) if l.startswith(("summary:", "totals:")))
        results.append((requests, total))
    (_, idle), (requests, loaded) = results
    return (loaded - idle) / requests, requests

def start_tls_proxies():
    """The three proxies terminating TLS with the same ECDSA P-256 certificate: their ports and processes."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem", "-subj", "/CN=bench.test", "-days", "2",
                    "-addext", "subjectAltName=DNS:bench.test"], check=True, capture_output=True)
    open(f"{work}/combined.pem", "w").write(open(f"{work}/cert.pem").read() + open(f"{work}/key.pem").read())
    ports = {"switchyard": free_port(), "nginx": free_port(), "haproxy": free_port()}
    conf = nginx_conf("proxy-tls.conf", f"""upstream app {{ server 127.0.0.1:{up_port}; keepalive 128; }}
      ssl_session_cache shared:SSL:10m;
      server {{ listen 127.0.0.1:{ports['nginx']} ssl; ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
    started = {"nginx": start(["nginx", "-c", conf, "-p", work])}; wait_port(ports["nginx"])
    ha = write("haproxy-tls.cfg", f"""
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{ports['haproxy']} ssl crt {work}/combined.pem
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:{up_port}
""")
    started["haproxy"] = start(["haproxy", "-f", ha]); wait_port(ports["haproxy"])
    sy = write("switchyard-tls.yaml", f"""
workers: 1
listeners:
  - bind: 127.0.0.1:{ports['switchyard']}
    tls: {{ certificates: [{{ cert: {work}/cert.pem, key: {work}/key.pem }}] }}
pools: {{ app: {{ servers: [{{ address: 127.0.0.1:{up_port} }}] }} }}
services: {{ web: {{ active: app }} }}
access_log: off
limits: {{ max_connections: 20000 }}
""")
    started["switchyard"] = start([binary, "run", "--config", sy]); wait_port(ports["switchyard"])
    return ports, started

def https():
    """HTTPS on the client side: the same ECDSA P-256 certificate for all three; keep-alive
    throughput, and the rate of new handshakes (Connection: close, a handshake per request)."""
    upstream = start_upstream()
    ports, started = start_tls_proxies()
    for label, extra in [x for x in (("keep-alive", ()), ("new handshake per request", ("-H", "Connection: close"))) if os.environ.get("BENCH_HTTPS_ONLY", x[0]) == x[0]]:
        results = {name: [] for name in ports}
        cpu = {name: [] for name in ports}
        for r in range(ROUNDS):
            names = list(ports) if r % 2 == 0 else list(reversed(list(ports)))
            for name in names:
                before = (cpu_seconds(started[name].pid), cpu_seconds(upstream.pid), children_cpu_seconds(), machine_idle_seconds(),
                          context_switches(started[name].pid)[0])
                out = subprocess.run(["wrk", "-t1", "-c50", f"-d{DURATION}s", "--latency", *extra, f"https://127.0.0.1:{ports[name]}/"],
                                     capture_output=True, text=True).stdout
                after = (cpu_seconds(started[name].pid), cpu_seconds(upstream.pid), children_cpu_seconds(), machine_idle_seconds(),
                         context_switches(started[name].pid)[0])
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                results[name].append(rps)
                cpu[name].append(tuple((b - a) / (rps * DURATION) * 1e6 for a, b in zip(before[:4], after[:4]))
                                 + ((after[4] - before[4]) / (rps * DURATION),))
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                p99 = re.search(r"\s99%\s+([\d.]+\w+)", out)
                print(f"round {r+1} {label:<26} {name:<11} {rps:>10.0f} req/s  p99 {p99.group(1) if p99 else '?'}"
                      + (f"  non-2xx {bad.group(1)}" if bad else ""), flush=True)
        med = {n: statistics.median(v) for n, v in results.items()}
        print(f"\nHTTPS {label}, medians over {ROUNDS} rounds (wrk -t1 -c50 -d{DURATION}s, ECDSA P-256, 1 worker each):")
        for n in ports:
            proxy_us, upstream_us, wrk_us, idle_us, sleeps = (statistics.median(x[i] for x in cpu[n]) for i in range(5))
            print(f"  {n:<11} {med[n]:>10.0f} req/s  CPU per request: proxy {proxy_us:6.2f} us, upstream {upstream_us:5.2f} us,"
                  f" wrk {wrk_us:6.2f} us, idle {idle_us:6.2f} us; proxy sleeps per request {sleeps:.3f}")
        print(f"ratio switchyard/nginx {med['switchyard']/med['nginx']:.2f}x, switchyard/haproxy {med['switchyard']/med['haproxy']:.2f}x\n", flush=True)

def serving_tasks(pid):
    """The threads that serve requests: every thread of the process and of its children (nginx's workers)."""
    pids = [pid]
    try:
        pids += [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    except ValueError: pass
    return [int(t) for p in pids for t in os.listdir(f"/proc/{p}/task")]

def syscalls_per_request(pid, url, extra=()):
    """strace -c on every serving thread while wrk runs: (system calls per request, the top calls)."""
    out = os.path.join(work, f"strace-{pid}-{time.time()}.txt")
    tracer = subprocess.Popen(["strace", "-c", "-o", out] + [a for t in serving_tasks(pid) for a in ("-p", str(t))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    text = subprocess.run(["wrk", "-t1", "-c50", f"-d{DURATION}s", *extra, url], capture_output=True, text=True).stdout
    tracer.send_signal(signal.SIGINT); tracer.wait(10)
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    rows = [l.split() for l in open(out).read().splitlines() if re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+", l)]
    calls = {r[-1]: int(r[3]) for r in rows if r[-1] != "total"}
    total = sum(calls.values())
    top = ", ".join(f"{name} {n / requests:.2f}" for name, n in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
    return total / requests, top

def syscalls():
    """System calls per proxied keep-alive request, plain HTTP and HTTPS, for the three proxies."""
    start_upstream()
    pids = {name: p.pid for name, p in start_proxies().items()}
    plain = {"switchyard": (sy_port,), "nginx": (ng_port,), "haproxy": (ha_port,)}
    tls_ports, tls = start_tls_proxies()
    results = {}
    for r in range(ROUNDS):
        for name in (plain if r % 2 == 0 else reversed(list(plain))):
            results.setdefault(("http", name), []).append(syscalls_per_request(pids[name], f"http://127.0.0.1:{plain[name][0]}/"))
            results.setdefault(("https", name), []).append(syscalls_per_request(tls[name].pid, f"https://127.0.0.1:{tls_ports[name]}/"))
    print(f"system calls per proxied keep-alive request (strace -c on the serving threads, wrk -t1 -c50 -d{DURATION}s, medians of {ROUNDS}):")
    for (scheme, name), values in sorted(results.items()):
        print(f"  {scheme:<5} {name:<11} {statistics.median(v[0] for v in values):5.2f}   ({values[-1][1]})")
    print(f"cost of entering and leaving the kernel once (a getppid loop): {syscall_cost_ns():.0f} ns")

def syscall_cost_ns():
    """What one trivial system call costs on this machine: the most batching system calls
    (io_uring) could save per call, since the work each call does stays."""
    source = write("syscall.c", """#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) { struct timespec a, b; const int n = 2000000;
  clock_gettime(CLOCK_MONOTONIC, &a); for (int i = 0; i < n; i++) syscall(SYS_getppid);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%f", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n); return 0; }""")
    program = os.path.join(work, "syscall")
    subprocess.run(["cc", "-O2", "-o", program, source], check=True)
    return statistics.median(float(subprocess.run([program], capture_output=True, text=True).stdout) for _ in range(5))

def instructions():
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    start_upstream()
    stripped = os.path.join(work, "switchyard-nodebug")   # valgrind cannot read Swift's DWARF
    subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
    # BENCH_ACCESS_LOG=1: with the access log written to a file (nginx's too), to see what a line costs.
    logging = os.environ.get("BENCH_ACCESS_LOG") == "1"
    # BENCH_TLS=1: the clients speak TLS 1.3 to the proxy (the same ECDSA certificate for both).
    tls = os.environ.get("BENCH_TLS") == "1"
    scheme = "https" if tls else "http"
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem", "-subj", "/CN=bench.test", "-days", "2"],
                       check=True, capture_output=True)
    sy_tls = f", tls: {{ certificates: [{{ cert: {work}/cert.pem, key: {work}/key.pem }}] }}" if tls else ""
    ng_tls = f" ssl; ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem" if tls else ""
    sy = write("switchyard-cg.yaml", f"""
workers: 1
listeners: [{{ bind: 127.0.0.1:{sy_port}{sy_tls} }}]
pools: {{ app: {{ servers: [{{ address: 127.0.0.1:{up_port} }}] }} }}
services: {{ web: {{ active: app }} }}
access_log: {os.path.join(work, "switchyard-access.log") if logging else "off"}
""")
    ng = nginx_conf("proxy-cg.conf", f"""upstream app {{ server 127.0.0.1:{up_port}; keepalive 128; }}
      server {{ listen 127.0.0.1:{ng_port}{ng_tls}; location / {{ proxy_pass http://app;
        proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
    # One process, so callgrind sees the worker itself.
    text = open(ng).read().replace("daemon off;", "daemon off; master_process off;")
    if logging: text = text.replace("access_log off;", f"access_log {work}/nginx-access.log;")
    open(ng, "w").write(text)
    s, n1 = callgrind_instructions("switchyard", [stripped, "run", "--config", sy], sy_port, signal.SIGINT, scheme)
    g, n2 = callgrind_instructions("nginx", ["nginx", "-c", ng, "-p", work], ng_port, signal.SIGQUIT, scheme)
    print(f"user-space instructions per proxied request (callgrind, wrk -t1 -c10 -d6s, 1 worker"
          f"{', access log to a file' if logging else ''}{', HTTPS' if tls else ''}):")
    print(f"  switchyard {s:8.0f}   ({n1} requests)")
    print(f"  nginx      {g:8.0f}   ({n2} requests)")
    print(f"ratio switchyard/nginx {s/g:.2f}")

def guard():
    """Canary guard reaction: a canary answering 500 to everything at about 1,000 req/s in
    total; time from its first failed response to the proxy's trip (audit), per canary weight."""
    import json, threading, datetime
    good_port, bad_port, proxy_port = free_port(), free_port(), free_port()
    start([binary, "demo-app", "--name", "good", "--listen", f"127.0.0.1:{good_port}"])
    start([binary, "demo-app", "--name", "bad", "--listen", f"127.0.0.1:{bad_port}", "--error-rate", "100%"])
    wait_port(good_port); wait_port(bad_port)
    sock = os.path.join(work, "admin.sock")
    conf = write("guard.yaml", f"""workers: 2
listeners: [{{ bind: 127.0.0.1:{proxy_port} }}]
pools:
  stable: {{ servers: [{{ name: s1, address: 127.0.0.1:{good_port} }}] }}
  canary: {{ servers: [{{ name: c1, address: 127.0.0.1:{bad_port} }}] }}
services: {{ web: {{ active: stable, standby: canary }} }}
admin: {{ socket: {sock} }}
access_log: off
""")
    start([binary, "run", "--config", conf]); wait_port(proxy_port)

    def admin(method, path, body=None):
        return unix_request(sock, method, path, body)[1]

    RATE, THREADS = 1000, 4
    state = {"stop": False, "first_failure": None, "sent": 0}
    lock = threading.Lock()
    def load():
        c = socket.create_connection(("127.0.0.1", proxy_port)); f = c.makefile("rb")
        period, next_at = THREADS / RATE, time.time()
        while not state["stop"]:
            next_at += period
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status = int(f.readline().split()[1]); length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""): break
                if line.lower().startswith(b"content-length:"): length = int(line.split(b":")[1])
            f.read(length)
            with lock:
                state["sent"] += 1
                if status >= 500 and state["first_failure"] is None: state["first_failure"] = time.time()
            delay = next_at - time.time()
            if delay > 0: time.sleep(delay)
    threads = [threading.Thread(target=load, daemon=True) for _ in range(THREADS)]
    for t in threads: t.start()
    time.sleep(1)
    print(f"canary guard (max_error_rate 50%, min_requests 20, window 5s); load paced at {RATE} req/s over {THREADS} connections")
    for weight in ["5%", "25%", "50%"]:
        results = []
        for _ in range(ROUNDS):
            with lock: state["first_failure"] = None; sent0 = state["sent"]; t0 = time.time()
            admin("PUT", "/v1/services/web/canary", {"pool": "canary", "weight": weight,
                  "guard": {"max_error_rate": "50%", "min_requests": 20, "window": "5s"}})
            trip = None
            for _ in range(500):
                svc = json.loads(admin("GET", "/v1/status"))["services"]["web"]
                if svc["canary"] is None and svc["guard_trip"] and svc["guard_trip"]["time"] != (results[-1][2] if results else None):
                    trip = svc["guard_trip"]; break
                time.sleep(0.01)
            if trip is None: raise SystemExit(f"the guard did not trip at {weight}")
            tripped = datetime.datetime.fromisoformat(trip["time"].replace("Z", "+00:00")).timestamp()
            with lock: first = state["first_failure"]; rate = (state["sent"] - sent0) / (time.time() - t0)
            results.append((tripped - first, rate, trip["time"]))
            time.sleep(0.5)
        lat = sorted(r[0] for r in results)
        print(f"  canary {weight:>4}: first failure to out of rotation: median {statistics.median(lat)*1000:5.0f} ms, max {lat[-1]*1000:5.0f} ms"
              f"  ({ROUNDS} rounds, {statistics.median(r[1] for r in results):.0f} req/s measured)")
    state["stop"] = True

def unix_request(sock, method, path, body=None, timeout=60, headers=""):
    """One admin request over the Unix socket: (status, body bytes). `headers`: more fields, each ending in CRLF."""
    import json
    c = socket.socket(socket.AF_UNIX); c.settimeout(timeout); c.connect(sock)
    data = json.dumps(body).encode() if body is not None else b""
    c.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(data)}\r\n{headers}\r\n".encode() + data)
    chunks = []   # joined once: appending to one bytes object copies it on every chunk
    while True:
        chunk = c.recv(1 << 20)
        if not chunk: break
        chunks.append(chunk)
    c.close()
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), payload

def scale_config(servers, port, upstream, sock, state):
    """servers/10 services, each matching its own host with a blue and a green pool of 5 servers."""
    services = max(1, servers // 10)
    lines = ["workers: 2", f"listeners: [{{ bind: 127.0.0.1:{port} }}]", f"admin: {{ socket: {sock} }}",
             f"state_file: {state}", "access_log: off", "pools:"]
    for k in range(services):
        for pool in ("blue", "green"):
            lines.append(f"  s{k}-{pool}:")
            lines.append("    servers:")
            for i in range(5):
                lines.append(f"      - {{ name: {pool[0]}{i}, address: 127.0.0.1:{upstream} }}")
    lines.append("services:")
    for k in range(services):
        lines.append(f"  s{k}: {{ match: {{ hosts: [s{k}.example] }}, active: s{k}-blue, standby: s{k}-green }}")
    return write(f"scale-{servers}.yaml", "\n".join(lines) + "\n"), services

def scale():
    """How a change, status, a scrape and routing grow with the configuration: 10 to 10,000
    servers (a tenth as many services, two pools of five servers each), two workers."""
    import json, threading
    start_upstream()
    sizes = [int(x) for x in os.environ.get("BENCH_SCALE_SIZES", "10,100,1000,10000").split(",")]
    print("flip: POST /v1/services/S/flip end to end (state file written and fsynced, every worker acknowledged);"
          " ack: publishing to every worker's acknowledgement (median);\nstatus: full, ?view=summary, ?service=S;"
          " scrape: GET /metrics; gzip: the same with Accept-Encoding: gzip, as Prometheus sends it; lean: GET /metrics?servers=off; flip under status: a flip sent while a full status is being answered;"
          " req/s: wrk -c50 to the last service's host")
    print(f"{'servers':>8} {'services':>8} {'start s':>8} {'flip ms':>8} {'ack us':>8} {'status ms':>9} {'status KB':>9}"
          f" {'summary ms':>10} {'service ms':>10} {'scrape ms':>9} {'scrape KB':>9} {'gzip ms':>8} {'gzip KB':>8} {'lean ms':>8} {'lean KB':>8} {'flip under status ms':>20} {'req/s':>8}")
    for n in sizes:
        port, sock = free_port(), os.path.join(work, f"admin-{n}.sock")
        conf, services = scale_config(n, port, up_port, sock, os.path.join(work, f"state-{n}.json"))
        t0 = time.time()
        p = start([binary, "run", "--config", conf]); wait_port(port, timeout=120)
        while not os.path.exists(sock): time.sleep(0.01)
        started = time.time() - t0
        flips = []
        for r in range(max(ROUNDS, 5) * 2):
            svc = f"s{(r * 7919) % services}"
            t = time.time(); code, _ = unix_request(sock, "POST", f"/v1/services/{svc}/flip"); flips.append(time.time() - t)
            if code != 200: raise SystemExit(f"flip of {svc} answered {code}")
        statuses, summaries, views, scrapes, zipped, leans, size_status, size_scrape, size_zipped, size_lean = [], [], [], [], [], [], 0, 0, 0, 0
        for r in range(max(ROUNDS, 3)):
            t = time.time(); _, body = unix_request(sock, "GET", "/v1/status"); statuses.append(time.time() - t); size_status = len(body)
            t = time.time(); unix_request(sock, "GET", "/v1/status?view=summary"); summaries.append(time.time() - t)
            t = time.time(); unix_request(sock, "GET", f"/v1/status?service=s{(r * 31) % services}"); views.append(time.time() - t)
            t = time.time(); _, text = unix_request(sock, "GET", "/metrics"); scrapes.append(time.time() - t); size_scrape = len(text)
            t = time.time(); _, text = unix_request(sock, "GET", "/metrics", headers="Accept-Encoding: gzip\r\n"); zipped.append(time.time() - t); size_zipped = len(text)
            t = time.time(); _, text = unix_request(sock, "GET", "/metrics?servers=off"); leans.append(time.time() - t); size_lean = len(text)
        ack = json.loads(body).get("publish_ack_us", {}).get("p50", float("nan"))
        # A change while a status request is being answered.
        under = []
        for r in range(3):
            th = threading.Thread(target=lambda: unix_request(sock, "GET", "/v1/status")); th.start(); time.sleep(0.002)
            t = time.time(); unix_request(sock, "POST", f"/v1/services/s{services - 1}/flip"); under.append(time.time() - t)
            th.join()
        out = subprocess.run(["wrk", "-t1", "-c50", f"-d{min(DURATION, 5)}s", "-H", f"Host: s{services - 1}.example", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        print(f"{n:>8} {services:>8} {started:>8.2f} {statistics.median(flips)*1000:>8.2f} {ack:>8.0f} {statistics.median(statuses)*1000:>9.1f}"
              f" {size_status/1024:>9.0f} {statistics.median(summaries)*1000:>10.1f} {statistics.median(views)*1000:>10.1f}"
              f" {statistics.median(scrapes)*1000:>9.1f} {size_scrape/1024:>9.0f}"
              f" {statistics.median(zipped)*1000:>8.1f} {size_zipped/1024:>8.0f}"
              f" {statistics.median(leans)*1000:>8.1f} {size_lean/1024:>8.0f}"
              f" {statistics.median(under)*1000:>20.1f} {rps:>8.0f}")
        p.send_signal(signal.SIGTERM); p.wait(30)

try:
    if mode == "scale": scale()
    if mode == "guard": guard()
    if mode == "slowloris": slowloris()
    if mode == "slowloris-instructions":
        start_upstream(); slowloris_instructions()
    if mode == "instructions": instructions()
    if mode == "https": https()
    if mode == "syscalls": syscalls()
    if mode in ("throughput", "all"): throughput()
    if mode in ("memory", "all"):
        stop_all(); procs.clear(); memory()
finally:
    stop_all()
