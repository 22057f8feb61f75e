#!/usr/bin/env python3
"""Interop check of coremq with Eclipse paho-mqtt (2.x), run by tests/integration/paho.rs.

Usage: paho_interop.py PORT SUB_ID PUB_ID

For MQTT 3.1.1 and then MQTT 5, a subscriber (SUB_ID) subscribes to `paho/<version>/#` at QoS 2
and a publisher (PUB_ID) publishes QoS 0, 1 and 2 messages and a retained QoS 1 message (MQTT 5:
with a content type and user properties). Once the retained message is acknowledged the subscriber
subscribes to its exact topic and gets it again, with the retain flag set. The caller picks ids
homed on different shards.

Prints one JSON line (sorted keys, no spaces) with, per version, the SUBACK grants, the
publisher's acknowledgement results and the messages received, sorted by topic then retain flag.
Exits 1 with a message on stderr if anything fails or takes longer than TIMEOUT seconds.
"""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

TIMEOUT = 5.0


def fail(why):
    print(f"paho_interop: {why}", file=sys.stderr)
    sys.exit(1)


class Peer:
    """A paho client with its network loop on a thread; events are collected under a lock."""

    def __init__(self, client_id, protocol, port):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.cond = threading.Condition()
        self.connected = None
        self.subacks = {}
        self.messages = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        if protocol == mqtt.MQTTv5:
            self.client.connect("127.0.0.1", port, keepalive=30, clean_start=True)
        else:
            self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connected is not None, "CONNACK")
        if self.connected.is_failure:
            fail(f"{client_id}: connection refused: {self.connected}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connected = reason_code
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks[mid] = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        entry = {
            "topic": msg.topic,
            "payload": msg.payload.decode(),
            "qos": msg.qos,
            "retain": bool(msg.retain),
        }
        props = getattr(msg, "properties", None)
        if props is not None:
            entry["content_type"] = getattr(props, "ContentType", None)
            entry["user_properties"] = [list(p) for p in getattr(props, "UserProperty", [])]
        with self.cond:
            self.messages.append(entry)
            self.cond.notify_all()

    def wait(self, predicate, what):
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"timed out waiting for {what}")
                self.cond.wait(left)

    def subscribe(self, topic, qos, properties=None):
        result, mid = self.client.subscribe(topic, qos, properties=properties)
        if result != mqtt.MQTT_ERR_SUCCESS:
            fail(f"subscribe {topic}: {mqtt.error_string(result)}")
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic, payload, qos, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=TIMEOUT)
        if not info.is_published():
            fail(f"publish {topic} QoS {qos} not acknowledged")
        return True

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def run(port, sub_id, pub_id, protocol, name):
    base = f"paho/{name}"
    sub = Peer(sub_id, protocol, port)
    pub = Peer(pub_id, protocol, port)
    granted = sub.subscribe(f"{base}/#", 2)
    props = None
    if protocol == mqtt.MQTTv5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "text/plain"
        props.UserProperty = [("k", "1"), ("a", "2"), ("k", "3")]
    acked = [pub.publish(f"{base}/q{qos}", f"qos {qos}", qos, properties=props) for qos in (0, 1, 2)]
    # The PUBACK of a retained message means every shard holds it.
    acked.append(pub.publish(f"{base}/retained", "kept", 1, retain=True, properties=props))
    sub.wait(lambda: len(sub.messages) >= 4, "the live messages")
    granted_retained = sub.subscribe(f"{base}/retained", 1)
    sub.wait(lambda: len(sub.messages) >= 5, "the retained message")
    pub.close()
    sub.close()
    messages = sorted(sub.messages, key=lambda m: (m["topic"], m["retain"]))
    return {
        "acked": acked,
        "granted": granted + granted_retained,
        "messages": messages,
    }


def main():
    if len(sys.argv) != 4:
        fail("usage: paho_interop.py PORT SUB_ID PUB_ID")
    if not hasattr(mqtt, "CallbackAPIVersion"):
        fail("paho-mqtt 2.0 or newer is needed (pip install -U paho-mqtt)")
    port, sub_id, pub_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    result = {
        "v311": run(port, sub_id, pub_id, mqtt.MQTTv311, "v311"),
        "v5": run(port, sub_id, pub_id, mqtt.MQTTv5, "v5"),
    }
    print(json.dumps(result, sort_keys=True, separators=(",", ":")))


if __name__ == "__main__":
    main()
