// Drives the softphone page in Debian's Chromium (headless, a WAV as its microphone) and
// prints what the page showed as one JSON object. Argument: JSON
//   {url, wav, seconds, screenshot, screenshot_at_s?, actions?: [{at_s, eval}]}
// Exit 1 with a message on stderr when the page fails or never connects.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../.tools/node/package.json"));
const { chromium } = require("playwright-core");

const opts = JSON.parse(process.argv[2]);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  `--use-file-for-fake-audio-capture=${opts.wav}`,
];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args });
const errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  const started = Date.now();
  await page.goto(opts.url);
  await page.waitForFunction(() => document.querySelector("#agent").options.length > 0 || window.voicemesh.status === "error", null, { timeout: 10000 });
  await page.click("#call");
  await page.waitForFunction(() => ["connected", "error", "ended"].includes(window.voicemesh.status), null, { timeout: 15000 });
  const connectedAfterMs = Date.now() - started;
  if ((await page.evaluate(() => window.voicemesh.status)) === "connected") {
    const shotAt = (opts.screenshot_at_s ?? opts.seconds * 0.8) * 1000;
    const actions = [...(opts.actions || [])].sort((a, b) => a.at_s - b.at_s);
    const t0 = Date.now();
    let shot = false;
    while (Date.now() - t0 < opts.seconds * 1000) {
      const elapsed = Date.now() - t0;
      while (actions.length && actions[0].at_s * 1000 <= elapsed) await page.evaluate(actions.shift().eval);
      if (!shot && elapsed >= shotAt && opts.screenshot) {
        await page.screenshot({ path: opts.screenshot, fullPage: true });
        shot = true;
      }
      if ((await page.evaluate(() => window.voicemesh.status)) !== "connected") break;
      await page.waitForTimeout(100);
    }
    if (!shot && opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    if (opts.hangup !== false && (await page.evaluate(() => window.voicemesh.status)) === "connected") {
      await page.click("#hangup");
      await page.waitForFunction(() => window.voicemesh.status !== "connected", null, { timeout: 5000 }).catch(() => {});
    }
  }
  const snapshot = await page.evaluate(() => JSON.parse(JSON.stringify(window.voicemesh)));
  process.stdout.write(JSON.stringify({ page: snapshot, errors, connected_after_ms: connectedAfterMs }) + "\n");
} catch (err) {
  process.stderr.write(`softphone.mjs: ${err.message || err}\n${errors.join("\n")}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
