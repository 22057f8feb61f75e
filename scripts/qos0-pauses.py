#!/usr/bin/env python3
"""A healthy QoS 0 subscriber that pauses now and then, beside one that never reads, against any
MQTT 3.1.1 broker on loopback: how many messages does the healthy one get?

One publisher sends QoS 0 messages of SIZE bytes at a steady RATE per second for SECONDS to one
topic with two subscribers: a reader that reads everything but stops for a few milliseconds
every so often (as real clients do under garbage collection or scheduling), and one that never
reads (a 4 KiB receive buffer). A broker that tells a paused reader from a stuck one delivers
everything to the reader.

    python3 scripts/qos0-pauses.py --port 1883
    python3 scripts/qos0-pauses.py --port 1883 --rate 100000 --size 1024 --seconds 8 \\
        --pause-ms 5-20 --every-ms 200

Prints one line: received, expected, lost, and the publisher's achieved rate. Exit status 1 when
the reader lost messages. Plain sockets, no MQTT library; loopback targets only.
"""

import argparse
import random
import socket
import struct
import sys
import threading
import time


def remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + remaining_length(len(body)) + body


def mqtt_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id):
    # MQTT 3.1.1, clean session, keep alive 60 s.
    body = mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + mqtt_str(client_id)
    return packet(0x10, body)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def read_packet(sock):
    first = read_exact(sock, 1)[0]
    mult, length = 1, 0
    while True:
        b = read_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, read_exact(sock, length)


def client(port, client_id, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect(("127.0.0.1", port))
    s.sendall(connect_packet(client_id))
    first, body = read_packet(s)
    if first != 0x20 or body[1] != 0:
        raise SystemExit(f"{client_id}: connection refused ({body!r})")
    return s


def subscribe(s, topic):
    s.sendall(packet(0x82, struct.pack(">H", 1) + mqtt_str(topic) + b"\x00"))
    first, _ = read_packet(s)
    if first != 0x90:
        raise SystemExit("no SUBACK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback only")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--rate", type=int, default=100_000, help="messages per second")
    ap.add_argument("--size", type=int, default=1024, help="payload bytes")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--pause-ms", default="5-20", help="pause length range, ms")
    ap.add_argument("--every-ms", type=float, default=200.0, help="reading time between pauses")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not a.host.startswith("127."):
        raise SystemExit("loopback targets only")
    lo, hi = (float(x) for x in a.pause_ms.split("-"))
    rng = random.Random(a.seed)
    topic = "pauses/qos0"
    expected = int(a.rate * a.seconds)

    reader = client(a.port, "qos0-pauses-reader", rcvbuf=64 * 1024)
    subscribe(reader, topic)
    stuck = client(a.port, "qos0-pauses-stuck", rcvbuf=4096)
    subscribe(stuck, topic)
    pub = client(a.port, "qos0-pauses-publisher")

    frame = packet(0x30, mqtt_str(topic) + b"x" * a.size)
    received = [0]

    def read():
        reader.settimeout(3.0)
        buf = bytearray()
        total = 0
        next_pause = time.monotonic() + a.every_ms / 1000
        try:
            while total < expected * len(frame):
                if time.monotonic() >= next_pause:
                    time.sleep(rng.uniform(lo, hi) / 1000)
                    next_pause = time.monotonic() + a.every_ms / 1000
                chunk = reader.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
        except socket.timeout:
            pass
        received[0] = total // len(frame)

    t = threading.Thread(target=read)
    t.start()
    # Paced in 1 ms batches.
    batch = max(1, a.rate // 1000)
    start = time.monotonic()
    sent = 0
    while sent < expected:
        n = min(batch, expected - sent)
        pub.sendall(frame * n)
        sent += n
        due = start + sent / a.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    took = time.monotonic() - start
    t.join()
    lost = expected - received[0]
    print(
        f"received {received[0]} of {expected} ({lost} lost); published at "
        f"{sent / took:,.0f} msg/s ({a.size} B payloads) with a never-reading subscriber beside"
    )
    for s in (reader, stuck, pub):
        s.close()
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
