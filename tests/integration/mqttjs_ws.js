// MQTT.js in Node over ws:// (MQTT 5) and wss:// (MQTT 3.1.1, the test CA trusted through `ca`):
// subscribe at QoS 2, publish at QoS 0, 1 and 2 (the last 100 kB, many frames and TLS records),
// and print what came back as JSON. Run by tests/integration/websocket.rs.
//   node mqttjs_ws.js MQTTJS_DIR WS_URL WSS_URL CA_FILE
const [mqttDir, wsUrl, wssUrl, caFile] = process.argv.slice(2);
const mqtt = require(mqttDir);
const fs = require('fs');

function run(url, options) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    const got = [];
    client.on('error', reject);
    client.on('connect', () => {
      client.subscribe('js/#', { qos: 2 }, (err) => {
        if (err) return reject(err);
        client.publish('js/0', 'zero', { qos: 0 });
        client.publish('js/1', 'one', { qos: 1 });
        client.publish('js/2', Buffer.alloc(100000, 0x2a), { qos: 2 });
      });
    });
    client.on('message', (topic, payload, packet) => {
      got.push({ topic, qos: packet.qos, length: payload.length });
      if (got.length === 3) client.end(false, {}, () => resolve(got));
    });
  });
}

(async () => {
  const ws = await run(wsUrl, { protocolVersion: 5 });
  const wss = await run(wssUrl, { protocolVersion: 4, ca: fs.readFileSync(caFile) });
  console.log(JSON.stringify({ ws, wss }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
