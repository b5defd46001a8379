#!/usr/bin/env python3
"""A tiny DNS server for tests: answers A and AAAA questions over UDP and TCP on 127.0.0.1,
from a JSON file the test rewrites (read again for every question), never the network.

    dns_server.py ANSWERS_FILE PORT_FILE

ANSWERS_FILE: {"mode": "answer", "names": {"app.test": ["127.0.0.2", "::1"]}}
  mode: answer (default), drop (never answer: a resolver that stopped answering),
        servfail or refused (that response code for every question).
  names: the addresses of each name (lowercase, no trailing dot); names not listed get
        NXDOMAIN, listed names without an address of the type asked get an empty answer.
A UDP answer larger than 512 bytes is sent truncated (TC set, no records), as a server
without EDNS does; the same question over TCP gets it whole.
The bound port is written to PORT_FILE once both sockets listen; every question asked is
appended to ANSWERS_FILE + ".log" (one line: transport, name, type, what was answered).
"""
import json
import os
import socket
import struct
import sys
import threading

TYPE_A, TYPE_AAAA = 1, 28


def read_answers(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"mode": "servfail", "names": {}}


def parse_question(message):
    """(id, flags, name, qtype, end of question) or None for anything unreadable."""
    if len(message) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", message[:6])
    if qdcount != 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(message):
            return None
        length = message[i]
        if length == 0:
            i += 1
            break
        if length > 63 or i + 1 + length > len(message):
            return None
        labels.append(message[i + 1:i + 1 + length].decode("ascii", "replace").lower())
        i += 1 + length
    if i + 4 > len(message):
        return None
    qtype, qclass = struct.unpack("!HH", message[i:i + 4])
    return ident, flags, ".".join(labels), qtype, i + 4


def respond(message, answers, transport, log):
    """The response to `message`, or None to stay silent."""
    parsed = parse_question(message)
    if parsed is None:
        return None
    ident, flags, name, qtype, end = parsed
    mode = answers.get("mode", "answer")
    question = message[12:end]
    rd = flags & 0x0100
    def header(rcode, ancount, tc=False):
        return struct.pack("!HHHHHH", ident, 0x8000 | rd | 0x0080 | (0x0200 if tc else 0) | rcode, 1, ancount, 0, 0)
    qname = {TYPE_A: "A", TYPE_AAAA: "AAAA"}.get(qtype, str(qtype))
    if mode == "drop":
        log.write(f"{transport} {name} {qname} dropped\n")
        return None
    if mode in ("servfail", "refused"):
        log.write(f"{transport} {name} {qname} {mode}\n")
        return header(2 if mode == "servfail" else 5, 0) + question
    names = answers.get("names", {})
    if name not in names:
        log.write(f"{transport} {name} {qname} nxdomain\n")
        return header(3, 0) + question
    records = b""
    count = 0
    for address in names[name]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if (family == socket.AF_INET) != (qtype == TYPE_A) or qtype not in (TYPE_A, TYPE_AAAA):
            continue
        data = socket.inet_pton(family, address)
        # The owner name is a pointer to the question's name (offset 12).
        records += struct.pack("!HHHIH", 0xC00C, qtype, 1, 5, len(data)) + data
        count += 1
    response = header(0, count) + question + records
    if transport == "udp" and len(response) > 512:
        log.write(f"{transport} {name} {qname} truncated\n")
        return header(0, 0, tc=True) + question
    log.write(f"{transport} {name} {qname} {count}\n")
    return response


def serve_tcp(listener, path):
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=tcp_connection, args=(connection, path), daemon=True).start()


def read_exactly(connection, n):
    data = b""
    while len(data) < n:
        chunk = connection.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def tcp_connection(connection, path):
    with connection:
        while True:
            prefix = read_exactly(connection, 2)
            if prefix is None:
                return
            message = read_exactly(connection, struct.unpack("!H", prefix)[0])
            if message is None:
                return
            with open(path + ".log", "a") as log:
                response = respond(message, read_answers(path), "tcp", log)
            if response is None:
                return
            connection.sendall(struct.pack("!H", len(response)) + response)


def main():
    path, port_file = sys.argv[1], sys.argv[2]
    # UDP and TCP on the same port: try ports until both binds succeed.
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
            break
        except OSError:
            udp.close()
            tcp.close()
    else:
        sys.exit("no port free for both UDP and TCP")
    tcp.listen(16)
    threading.Thread(target=serve_tcp, args=(tcp, path), daemon=True).start()
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.rename(port_file + ".tmp", port_file)
    while True:
        message, peer = udp.recvfrom(65535)
        with open(path + ".log", "a") as log:
            response = respond(message, read_answers(path), "udp", log)
        if response is not None:
            udp.sendto(response, peer)


if __name__ == "__main__":
    main()
