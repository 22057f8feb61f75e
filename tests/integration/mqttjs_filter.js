// Content filters with MQTT.js (npm `mqtt`), run by tests/integration/filter_clients.rs: the
// README's example. Usage: node mqttjs_filter.js PORT SUB5_ID SUB3_ID PUB_ID
//
// An MQTT 5 subscriber with the `filter` user property and an MQTT 3.1.1 one with the $filter/
// prefix subscribe to sensors/#; a publisher sends five messages, the last an end marker that
// passes. Prints one JSON line (sorted keys) with what each subscriber received up to the marker;
// exits 1 after 5 s or on any error.
const path = require('path')
const mqtt = require(path.join(__dirname, '../../target/npm/node_modules/mqtt'))

const [port, sub5Id, sub3Id, pubId] = process.argv.slice(2)
const url = `mqtt://127.0.0.1:${port}`
const expr = 'temp > 30 && site == "north"'
const messages = [
  '{"temp": 31, "site": "north"}',
  '{"temp": 12, "site": "north"}',
  'temp 40',
  '{"temp": 33, "site": "south"}',
  '{"temp": 35, "site": "north", "end": 1}',
]
const end = messages[messages.length - 1]
setTimeout(() => { console.error('mqttjs_filter: timed out'); process.exit(1) }, 5000)

function connect (clientId, protocolVersion) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { clientId, protocolVersion, reconnectPeriod: 0 })
    c.once('connect', () => resolve(c))
    c.once('error', reject)
  })
}

async function main () {
  const got = { v5: [], v311: [] }
  const sub5 = await connect(sub5Id, 5)
  const sub3 = await connect(sub3Id, 4)
  const done = []
  for (const [client, key] of [[sub5, 'v5'], [sub3, 'v311']]) {
    done.push(new Promise((resolve) => client.on('message', (_topic, payload) => {
      got[key].push(payload.toString())
      if (payload.toString() === end) resolve()
    })))
  }
  // The README's two lines.
  await sub5.subscribeAsync('sensors/#', { qos: 1, properties: { userProperties: { filter: expr } } })
  await sub3.subscribeAsync(`$filter/${expr}/sensors/#`, { qos: 1 })
  const pub = await connect(pubId, 5)
  for (const m of messages) await pub.publishAsync('sensors/a', m, { qos: 1 })
  await Promise.all(done)
  console.log(JSON.stringify({ v311: got.v311, v5: got.v5 }))
  for (const c of [sub5, sub3, pub]) c.end(true)
  process.exit(0)
}

main().catch((e) => { console.error(`mqttjs_filter: ${e}`); process.exit(1) })
