// Drives headless Chromium (Debian's /usr/bin/chromium) with playwright-core: loads
// mqtt_page.html, injects MQTT.js's browser bundle, runs the page's round trips over ws:// and
// wss:// and prints their result as JSON. The test server certificate is trusted through the
// command line (--ignore-certificate-errors-spki-list with its public key's SHA-256).
//   node browser_ws.js NPM_DIR WS_URL WSS_URL SPKI_SHA256
const path = require('path');
const [npmDir, wsUrl, wssUrl, spki] = process.argv.slice(2);
const { chromium } = require(path.join(npmDir, 'node_modules', 'playwright-core'));

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--ignore-certificate-errors-spki-list=' + spki,
    ],
  });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => console.error('page: ' + m.text()));
    await page.goto('file://' + path.join(__dirname, 'mqtt_page.html'));
    await page.addScriptTag({ path: path.join(npmDir, 'node_modules', 'mqtt', 'dist', 'mqtt.min.js') });
    const result = await page.evaluate(([ws, wss]) => window.runMqtt(ws, wss), [wsUrl, wssUrl]);
    result.log = await page.textContent('#log');
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
