#!/usr/bin/env python3
"""Password guessing against an MQTT broker on loopback, to see what a guessing client gets.

Opens connection after connection from one source address (127.0.0.0/8: pick one with
--source), each sending an MQTT 3.1.1 CONNECT with USER and a wrong password, for SECONDS, and
counts the answers: a password check (CONNACK return code 4), another refusal (return code 5:
not authorized or banned), or a connection closed without CONNACK (closed at accept: a ban or a
per-address limit).

    python3 scripts/guess-passwords.py --port 1883 --user alice --seconds 6
    python3 scripts/guess-passwords.py --port 1883 --user alice --source 127.0.0.3 --right PASSWORD

With --right, a correct login from the same address is tried at the end and its outcome printed.
Prints one line per run; exit status 0. Loopback targets only; plain sockets, no MQTT library.
"""

import argparse
import socket
import struct
import time


def mqtt_str(b):
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id, user, password):
    flags = 0x02 | 0x80 | 0x40  # clean session, user name, password
    body = (mqtt_str(b"MQTT") + bytes([4, flags]) + struct.pack(">H", 60) + mqtt_str(client_id)
            + mqtt_str(user) + mqtt_str(password))
    return bytes([0x10, len(body)]) + body


def attempt(args, n, password):
    """One CONNECT; returns the CONNACK return code, or None when closed without one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((args.source, 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", args.port))
        s.sendall(connect_packet(f"guess-{n}".encode(), args.user.encode(), password))
        data = b""
        while len(data) < 4:
            chunk = s.recv(4 - len(data))
            if not chunk:
                return None
            data += chunk
        return data[3]
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        return None
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--user", default="alice")
    ap.add_argument("--source", default="127.0.0.2", help="a 127.0.0.0/8 source address")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--right", help="the correct password, tried once at the end")
    args = ap.parse_args()
    if not args.source.startswith("127."):
        raise SystemExit("loopback sources only")
    counts = {"checked (rc 4)": 0, "refused (rc 5)": 0, "closed at accept": 0, "other": 0}
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        rc = attempt(args, n, b"wrong-guess")
        key = {4: "checked (rc 4)", 5: "refused (rc 5)", None: "closed at accept"}.get(rc, "other")
        counts[key] += 1
    rate = counts["checked (rc 4)"] / max(args.seconds, 1e-9)
    line = ", ".join(f"{k}: {v}" for k, v in counts.items())
    print(f"{n} attempts in {args.seconds:.0f} s from {args.source}: {line}; "
          f"{rate:.1f} password checks/s")
    if args.right:
        rc = attempt(args, 0, args.right.encode())
        print(f"the right password from {args.source}: "
              f"{'accepted' if rc == 0 else f'return code {rc}' if rc is not None else 'closed'}")


if __name__ == "__main__":
    main()
