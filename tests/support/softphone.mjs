// Drives the softphone page in Debian's Chromium (headless, a WAV as its microphone) and
// prints what the page showed as one JSON object. Options: JSON on stdin (it holds the call
// token, which a command line would show to every process on the machine):
//   {url, wav, seconds, screenshot?, screenshot_at_s?, actions?: [{at_s, eval}],
//    evaluate?: an expression evaluated once the page has its settings (its value is `evaluated`),
//    call?: false to only load the page, hangup?: false to leave the call up at the end,
//    deny_microphone?: true to answer the page's microphone request with no,
//    hangup_while_connecting?: true to hang up while the offer is held on its way to the edge}
// A page that refuses (a bad token, an unknown agent, a refused call) is a result, not a
// failure. Exit 1, naming the step, when a step does not finish in time; the screenshot
// (when asked for) then shows the page as it was.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readOptions } from "./driver_options.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../.tools/node/package.json"));
const { chromium } = require("playwright-core");

const { opts, redact } = await readOptions();
const plain = (text) => String(text).replace(/\x1b\[[0-9;]*m/g, ""); // playwright colours its call logs

const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${opts.wav}`,
  // the permission prompt, answered yes (headless, without it: no)
  ...(opts.deny_microphone ? [] : ["--use-fake-ui-for-media-stream"]),
];
const status = (page) => page.evaluate(() => window.voicemesh.status);
const shoot = async (page) => {
  await page.screenshot({ path: opts.screenshot, fullPage: true });
  shot = true;
};

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args });
const errors = [];
let page = null;
let shot = false;
let step = "page load";
try {
  page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(redact(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(redact(m.text())));
  let offerSent = null, sawOffer = () => {}, letOfferGo = () => {};
  if (opts.hangup_while_connecting) {
    offerSent = new Promise((resolve) => (sawOffer = resolve));
    const held = new Promise((resolve) => (letOfferGo = resolve));
    await page.route(/\/v1\/whip(\?|$)/, async (route) => {
      sawOffer();
      await held;
      await route.abort().catch(() => {}); // the page has given up on it already
    });
  }
  await page.goto(opts.url, { timeout: 10000 });
  step = "config (GET /v1/softphone/config)";
  await page.waitForFunction(() => window.voicemesh && window.voicemesh.status !== "loading", null, { timeout: 10000 });
  const result = { errors, connected_after_ms: null };
  if (opts.evaluate) {
    step = "evaluate";
    result.evaluated = await page.evaluate(opts.evaluate);
  }
  if (opts.call !== false && (await page.evaluate(() => window.voicemesh.can_call))) {
    step = "connect (Call, WHIP, ICE/DTLS)";
    const started = Date.now();
    await page.click("#call", { timeout: 5000 });
    if (offerSent) {
      step = "hang up while connecting";
      await offerSent;
      await page.click("#hangup", { timeout: 2000 });
      await page.waitForFunction(() => window.voicemesh.status === "ended", null, { timeout: 5000 });
      letOfferGo();
      await page.waitForTimeout(1000); // nothing of the abandoned call may come back
    }
    await page.waitForFunction(() => ["connected", "error", "ended"].includes(window.voicemesh.status), null, { timeout: 15000 });
    result.connected_after_ms = Date.now() - started;
    if ((await status(page)) === "connected") {
      step = "call";
      const shotAt = (opts.screenshot_at_s ?? opts.seconds * 0.8) * 1000;
      const actions = [...(opts.actions || [])].sort((a, b) => a.at_s - b.at_s);
      const t0 = Date.now();
      while (Date.now() - t0 < opts.seconds * 1000) {
        const elapsed = Date.now() - t0;
        while (actions.length && actions[0].at_s * 1000 <= elapsed) await page.evaluate(actions.shift().eval);
        if (!shot && elapsed >= shotAt && opts.screenshot) {
          await shoot(page);
        }
        if ((await status(page)) !== "connected") break;
        await page.waitForTimeout(100);
      }
      if (opts.hangup !== false && (await status(page)) === "connected") {
        step = "hang up";
        await page.click("#hangup");
        await page.waitForFunction(() => window.voicemesh.status !== "connected", null, { timeout: 5000 });
      }
    }
  }
  if (opts.screenshot && !shot) await shoot(page);
  result.page = await page.evaluate(() => JSON.parse(JSON.stringify(window.voicemesh)));
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (err) {
  let shown = "";
  if (page) {
    shown = await page.evaluate(() => `the page said ${window.voicemesh.status}${window.voicemesh.error ? `: ${window.voicemesh.error}` : ""}`).catch(() => "");
    if (opts.screenshot) await shoot(page).then(() => (shown += ` (screenshot: ${opts.screenshot})`), () => {});
  }
  const lines = [`softphone.mjs: ${step} failed: ${err.message || err}`, shown, ...errors].filter(Boolean);
  process.stderr.write(plain(redact(lines.join("\n"))) + "\n");
  process.exitCode = 1;
} finally {
  await browser.close();
}
