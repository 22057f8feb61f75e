#!/usr/bin/env python3
"""What survives `kill -9`: coremq (COREMQ_DATA_DIR, default COREMQ_FSYNC=batch) and Mosquitto
(`persistence true`, its default autosave) side by side.

For each broker: start it fresh on a free loopback port with an empty data directory; a
persistent subscriber (MQTT 3.1.1, Clean Session 0) subscribes to kill9/# at QoS 1 and goes
offline; a publisher sends N QoS 1 messages (default 20,000) and counts the PUBACKs; the broker
is killed with SIGKILL, started again on the same directory, and the subscriber comes back and
counts what it gets. Prints acknowledged vs delivered for both. Neither queue is limited (coremq:
COREMQ_MAX_QUEUED_MESSAGES=10000000; Mosquitto: max_queued_messages 0): a message dropped by a full
queue is a limit at work, not a crash loss.

    scripts/kill9-compare.py            # needs python3-paho-mqtt (pip install paho-mqtt),
    N=100000 scripts/kill9-compare.py   # mosquitto, and target/release/coremq

Only the brokers it started are stopped, by PID. Loopback only.
"""
import os, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COREMQ = os.path.join(HERE, "target", "release", "coremq")
N = int(os.environ.get("N", "20000"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(kind, port, data):
    if kind == "coremq":
        env = {k: v for k, v in os.environ.items() if not k.startswith("COREMQ_")}
        env.update(COREMQ_LISTEN=f"127.0.0.1:{port}", COREMQ_DATA_DIR=data, COREMQ_LOG="warn",
                   COREMQ_CONNECTION_RATE_PER_ADDRESS="0", COREMQ_MAX_QUEUED_MESSAGES="10000000",
                   COREMQ_MAX_QUEUED_BYTES="1GiB")
        p = subprocess.Popen([COREMQ], env=env, stdout=subprocess.DEVNULL)
    else:
        conf = os.path.join(data, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {data}/\nmax_queued_messages 0\nlog_type error\n")
        p = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.3)  # the listener is up; let start-up finish
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit(f"{kind} did not start on port {port}")


def client(cid, clean):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean,
                    protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(20)
    c.max_queued_messages_set(0)
    return c


def run(kind):
    data = tempfile.mkdtemp(prefix=f"kill9-{kind}-")
    os.chmod(data, 0o777)
    port = free_port()
    broker = start(kind, port, data)
    sub = client("kill9-sub", False)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("kill9/#", qos=1)
    time.sleep(0.5)
    sub.disconnect()
    sub.loop_stop()

    acked = set()
    lock = threading.Lock()
    pub = client("kill9-pub", True)
    mids = {}
    def on_publish(c, u, mid, rc, props):
        with lock:
            if mid in mids:
                acked.add(mids[mid])
    pub.on_publish = on_publish
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    for i in range(N):
        info = pub.publish("kill9/data", str(i).encode(), qos=1)
        with lock:
            mids[info.mid] = i
    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if len(acked) >= N:
                break
        time.sleep(0.05)
    broker.send_signal(signal.SIGKILL)
    broker.wait()
    pub.loop_stop()
    with lock:
        n_acked = len(acked)

    broker = start(kind, port, data)
    got = set()
    last = [time.time()]
    sub = client("kill9-sub", False)
    def on_message(c, u, m):
        got.add(int(m.payload))
        last[0] = time.time()
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    while time.time() - last[0] < 2:
        time.sleep(0.1)
    sub.disconnect()
    sub.loop_stop()
    broker.send_signal(signal.SIGTERM)
    broker.wait()
    shutil.rmtree(data, ignore_errors=True)
    lost = len(acked - got)
    print(f"{kind:10} acknowledged {n_acked:7}  delivered after kill -9 and restart {len(got):7}  "
          f"acknowledged but lost {lost:7}")


for kind in ("coremq", "mosquitto"):
    run(kind)
