"""Slow-header client for scripts/bench slowloris: many connections, each trickling a request
head one byte at a time and never finishing it. Loopback only; runs for a bounded time.

Usage: python3 scripts/slowloris.py PORT [--connections N] [--head-bytes B] [--interval S]
                                        [--duration S] [--ramp S] [--head-start B] [--burst]
Prints "ready" once every connection is open, and a one-line summary when it stops.
A connection the server closes (a 408 after its header timeout, say) is opened again, as an
attacker would; the summary counts those reopenings.
"""
import argparse, errno, os, resource, selectors, signal, socket, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--connections", type=int, default=5000)
parser.add_argument("--head-bytes", type=int, default=4096)
parser.add_argument("--interval", type=float, default=2.0, help="seconds between two bytes on one connection")
parser.add_argument("--duration", type=float, default=60.0, help="seconds to run after the connections are open")
parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the connections are opened")
parser.add_argument("--head-start", type=int, default=0,
                    help="bytes of the head sent at once on connecting, the rest one byte at a time")
parser.add_argument("--burst", action="store_true",
                    help="send the next byte on every connection at once each interval (as the classic tool does)"
                         " instead of spreading the sends evenly")
args = parser.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = args.connections + 100
if hard != resource.RLIM_INFINITY and hard < want:
    raise SystemExit(f"slowloris: {args.connections} connections need an open-file limit of about {want}; "
                     f"the hard limit is {hard} (raise it with ulimit -Hn)")
if soft != resource.RLIM_INFINITY and soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

# A plausible head that never ends: a request line, Host, then padding fields.
head = b"GET /slow HTTP/1.1\r\nHost: slowloris\r\n"
n = 0
while len(head) < args.head_bytes:
    head += b"X-Pad-%04d: %s\r\n" % (n, b"a" * 40)
    n += 1
head = head[:args.head_bytes]

selector = selectors.DefaultSelector()
sockets = [None] * args.connections      # socket per slot
offsets = [0] * args.connections         # bytes of the head sent on the slot's current socket
opened = reopened = sent = 0
failures = {}                            # connect errors by name


def open_slot(i):
    global opened
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", args.port))
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
        failures[name] = failures.get(name, 0) + 1
        s.close()
        sockets[i] = None
        return
    if args.head_start > 0:
        s.sendall(head[:args.head_start])
    s.setblocking(False)
    sockets[i] = s
    offsets[i] = args.head_start
    selector.register(s, selectors.EVENT_READ, i)
    opened += 1


def drop_slot(i):
    s = sockets[i]
    if s is None:
        return
    selector.unregister(s)
    s.close()
    sockets[i] = None


def handle_readable(timeout):
    """The server answered (an error) or closed: forget that socket; it is reopened when its turn comes."""
    for key, _ in selector.select(timeout):
        i = key.data
        try:
            sockets[i].recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            pass
        drop_slot(i)


ramp_start = time.monotonic()
for i in range(args.connections):
    target = ramp_start + args.ramp * i / args.connections
    while time.monotonic() < target:
        handle_readable(max(0.0, min(0.005, target - time.monotonic())))
    open_slot(i)
print("ready", flush=True)

start = time.monotonic()
end = start + args.duration


def stop_early(*_):
    global end
    end = 0  # SIGTERM: stop at the next turn of the loop and print the summary


signal.signal(signal.SIGTERM, stop_early)
cursor = 0
done = 0
while True:
    now = time.monotonic()
    if now >= end:
        break
    # Sends due so far, spread evenly: every slot gets one byte per interval.
    if args.burst:
        due = (int((now - start) / args.interval) + 1) * args.connections - done
    else:
        due = int((now - start) / args.interval * args.connections) - done
    for _ in range(due):
        i = cursor
        cursor = (cursor + 1) % args.connections
        done += 1
        if sockets[i] is None:
            open_slot(i)
            if sockets[i] is not None:
                reopened += 1
            continue
        if offsets[i] >= len(head):
            continue
        try:
            sockets[i].send(head[offsets[i]:offsets[i] + 1])
            offsets[i] += 1
            sent += 1
        except BlockingIOError:
            pass
        except OSError:
            drop_slot(i)
    handle_readable(0.005)

alive = sum(1 for s in sockets if s is not None)
print(f"slowloris: {args.connections} slots, {opened} connections opened ({reopened} after the server closed one), "
      f"{sent} bytes sent, {alive} open at the end"
      + (f"; failed connects: {failures}" if failures else ""), flush=True)
for i in range(args.connections):
    drop_slot(i)
