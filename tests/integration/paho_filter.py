#!/usr/bin/env python3
"""Content filters with Eclipse paho-mqtt (2.x), run by tests/integration/filter_clients.rs.

Usage: paho_filter.py PORT SUB5_ID SUB3_ID PUB_ID

An MQTT 5 subscriber (SUB5_ID) subscribes to `sensors/#` at QoS 1 with the User Property
filter = `temp > 30 && site == "north"`; an MQTT 3.1.1 subscriber (SUB3_ID) subscribes to the same
with the `$filter/` prefix. A publisher (PUB_ID) sends five messages, the last an end marker that
passes. Prints one JSON line (sorted keys, no spaces): the payloads each subscriber received up to
the end marker, in order, and the v5 SUBACK's reason codes. Exits 1 with a message on stderr if
anything fails or takes longer than paho_interop.TIMEOUT seconds. The client wrapper is the
interop test's (`paho_interop.Peer`).
"""

import json
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# The interop test's client wrapper (same directory).
import paho_interop
from paho_interop import Peer



def fail(why):
    print(f"paho_filter: {why}", file=sys.stderr)
    sys.exit(1)


paho_interop.fail = fail  # the wrapper's errors name this script

EXPR = 'temp > 30 && site == "north"'
MESSAGES = [
    '{"temp": 31, "site": "north"}',
    '{"temp": 12, "site": "north"}',
    "temp 40",
    '{"temp": 33, "site": "south"}',
    '{"temp": 35, "site": "north", "end": 1}',
]


def main():
    port = int(sys.argv[1])
    sub5 = Peer(sys.argv[2], mqtt.MQTTv5, port)
    props = Properties(PacketTypes.SUBSCRIBE)
    props.UserProperty = ("filter", EXPR)
    suback5 = sub5.subscribe("sensors/#", 1, properties=props)
    sub3 = Peer(sys.argv[3], mqtt.MQTTv311, port)
    if sub3.subscribe(f"$filter/{EXPR}/sensors/#", 1) != [1]:
        fail("3.1.1 SUBACK refused the filter")
    pub = Peer(sys.argv[4], mqtt.MQTTv5, port)
    for m in MESSAGES:
        pub.publish("sensors/a", m, 1)
    received = {}
    for peer, key in ((sub5, "v5"), (sub3, "v311")):
        peer.wait(lambda p=peer: any(m["payload"] == MESSAGES[-1] for m in p.messages), "end marker")
        received[key] = [m["payload"] for m in peer.messages]
    for peer in (sub5, sub3, pub):
        peer.close()
    received["v5_suback"] = suback5
    print(json.dumps(received, sort_keys=True, separators=(",", ":")))


if __name__ == "__main__":
    main()
