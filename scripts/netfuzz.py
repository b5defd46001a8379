"""Network fuzzing for scripts/netfuzz: mutated requests from 32 clients (sometimes sent in
pieces, sometimes cut short) through a release build of Switchyard to an upstream that answers
with mutated, truncated or unasked-for responses. Reports whether the proxy survived, its
memory before and after, and its exit code after SIGTERM.
Usage: python3 scripts/netfuzz.py SEED SECONDS BINARY"""
import random, socket, threading, time, subprocess, os, sys, tempfile
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
BINARY = sys.argv[3] if len(sys.argv) > 3 else ".build/release/switchyard"
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
UP, PX = free_port(), free_port()
WORK = tempfile.mkdtemp(prefix="switchyard-netfuzz-")
seeds = [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
         b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
         b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         b"GET /upgrade HTTP/1.1\r\nHost: a\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n",
         b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]
responses = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
             b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n",
             b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
             b"HTTP/1.1 200 OK\r\n\r\nclose-delimited"]
def mutate(b):
    b = bytearray(b)
    for _ in range(random.randint(0, 6)):
        op = random.random()
        if op < 0.3 and b: b[random.randrange(len(b))] = random.randrange(256)
        elif op < 0.5: b[random.randrange(len(b)+1):0] = bytes(random.randrange(256) for _ in range(random.randint(1, 8)))
        elif op < 0.7 and b: del b[random.randrange(len(b))]
        elif op < 0.85: b += random.choice(seeds + responses)
        else: b = b[:random.randrange(len(b)+1)]
    return bytes(b)
def upstream():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", UP)); s.listen(512)
    def handle(c):
        try:
            c.settimeout(2)
            while True:
                d = c.recv(65536)
                if not d: break
                if random.random() < 0.1: break
                c.sendall(mutate(random.choice(responses)))
                if random.random() < 0.3: break
        except Exception: pass
        finally: c.close()
    while True:
        c, _ = s.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
threading.Thread(target=upstream, daemon=True).start()
time.sleep(0.3)
conf = open(f"{WORK}/nf.yaml", "w"); conf.write(f"workers: 2\nlisteners: [{{bind: 127.0.0.1:{PX}}}]\npools: {{app: {{servers: [{{address: 127.0.0.1:{UP}}}]}}}}\nservices: {{web: {{active: app}}}}\naccess_log: off\ntimeouts: {{client_header: 2s, upstream_response: 2s, client_idle: 3s}}\n"); conf.close()
proxy = subprocess.Popen([BINARY, "run", "-c", f"{WORK}/nf.yaml"], stderr=open(f"{WORK}/nf.err", "w"))
time.sleep(0.5)
def rss(): return int([l for l in open(f"/proc/{proxy.pid}/status") if l.startswith("VmRSS")][0].split()[1])
start = rss(); sent = 0; end = time.time() + float(sys.argv[2] if len(sys.argv) > 2 else 60)
def client():
    global sent
    while time.time() < end:
        try:
            c = socket.create_connection(("127.0.0.1", PX), timeout=0.2)
            for _ in range(random.randint(1, 4)):
                data = mutate(random.choice(seeds))
                if random.random() < 0.3:
                    for i in range(0, len(data), 7): c.sendall(data[i:i+7])
                else: c.sendall(data)
                sent += 1
                try: c.recv(65536)
                except Exception: pass
                if random.random() < 0.2: break
            c.close()
        except Exception: pass
threads = [threading.Thread(target=client) for _ in range(32)]
for t in threads: t.start()
for t in threads: t.join()
alive = proxy.poll() is None
print(f"inputs {sent}, proxy alive: {alive}, RSS {start//1024} -> {rss()//1024 if alive else -1} MiB")
proxy.terminate(); proxy.wait(10)
print("exit code after SIGTERM:", proxy.returncode)
print(open(f"{WORK}/nf.err").read()[-1500:])
sys.exit(0 if alive and proxy.returncode == 0 else 1)
