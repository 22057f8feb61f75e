#!/usr/bin/env python3
"""Content filters with Eclipse paho-mqtt (2.x), run by tests/integration/filter_clients.rs.

Usage: paho_filter.py PORT SUB5_ID SUB3_ID PUB_ID

An MQTT 5 subscriber (SUB5_ID) subscribes to `sensors/#` at QoS 1 with the User Property
filter = `temp > 30 && site == "north"`; an MQTT 3.1.1 subscriber (SUB3_ID) subscribes to the same
with the `$filter/` prefix. A publisher (PUB_ID) sends five messages, the last an end marker that
passes. Prints one JSON line (sorted keys, no spaces): the payloads each subscriber received up to
the end marker, in order, and the v5 SUBACK's reason codes. Exits 1 with a message on stderr if
anything fails or takes longer than TIMEOUT seconds.
"""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 5.0
EXPR = 'temp > 30 && site == "north"'
MESSAGES = [
    '{"temp": 31, "site": "north"}',
    '{"temp": 12, "site": "north"}',
    "temp 40",
    '{"temp": 33, "site": "south"}',
    '{"temp": 35, "site": "north", "end": 1}',
]


def fail(why):
    print(f"paho_filter: {why}", file=sys.stderr)
    sys.exit(1)


class Peer:
    def __init__(self, client_id, protocol, port):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.cond = threading.Condition()
        self.connected = False
        self.suback = None
        self.messages = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connected, "CONNACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connected = not reason_code.is_failure
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.suback = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(msg.payload.decode())
            self.cond.notify_all()

    def wait(self, done, what):
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"no {what} within {TIMEOUT} s")
                self.cond.wait(left)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    port = int(sys.argv[1])
    sub5 = Peer(sys.argv[2], mqtt.MQTTv5, port)
    props = Properties(PacketTypes.SUBSCRIBE)
    props.UserProperty = ("filter", EXPR)
    sub5.client.subscribe("sensors/#", qos=1, properties=props)
    sub5.wait(lambda: sub5.suback is not None, "v5 SUBACK")
    sub3 = Peer(sys.argv[3], mqtt.MQTTv311, port)
    sub3.client.subscribe(f"$filter/{EXPR}/sensors/#", qos=1)
    sub3.wait(lambda: sub3.suback is not None, "3.1.1 SUBACK")
    if sub3.suback != [1]:
        fail(f"3.1.1 SUBACK {sub3.suback}")
    pub = Peer(sys.argv[4], mqtt.MQTTv5, port)
    for m in MESSAGES:
        pub.client.publish("sensors/a", m, qos=1).wait_for_publish(TIMEOUT)
    for peer in (sub5, sub3):
        peer.wait(lambda p=peer: MESSAGES[-1] in p.messages, "end marker")
    for peer in (sub5, sub3, pub):
        peer.stop()
    print(
        json.dumps(
            {"v5": sub5.messages, "v311": sub3.messages, "v5_suback": sub5.suback},
            sort_keys=True,
            separators=(",", ":"),
        )
    )


if __name__ == "__main__":
    main()
