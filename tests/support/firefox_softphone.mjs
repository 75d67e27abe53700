// Drives the softphone page in Debian's Firefox ESR (headless, puppeteer-core over WebDriver
// BiDi) and prints what the page showed as one JSON object: softphone.mjs's contract. Options:
// JSON on stdin (it holds the call token, which a command line would show to every process):
//   {url, wav, seconds, screenshot?, screenshot_at_s?, actions?: [{at_s, eval}],
//    evaluate?: an expression evaluated once the page has its settings (its value is `evaluated`),
//    call?: false to only load the page, hangup?: false to leave the call up at the end}
// Besides softphone.mjs's {page, errors, connected_after_ms}: `browser` (Firefox's version) and
// `rtc_stats`, the call's own getStats() entries with Firefox's field names, read before hang-up.
// A page that refuses is a result, not a failure. Exit 1, naming the step, when a step does not
// finish in time. Firefox runs Web Audio only with an audio output: firefox.py gives it one.
//
// Firefox has no "microphone from a file" switch (Chromium's --use-file-for-fake-audio-capture),
// so before the page's own script runs, getUserMedia is replaced by one that returns a Web Audio
// stream playing the WAV, started when the page asks for the microphone (as Chromium's fake
// device starts its file), then silence. The rest (WebRTC, Opus, ICE/DTLS, the data channel,
// getStats, AudioContext, the <audio> playout) is Firefox's own.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readOptions } from "./driver_options.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../.tools/node/package.json"));
const puppeteer = require("puppeteer-core");

const { opts, redact } = await readOptions();

// Runs in the page before app.js. Only the microphone is substituted; every RTCPeerConnection
// the page makes is remembered, so the driver can read getStats() as Firefox reports it.
function substituteMicrophone(wavBase64) {
  const wav = Uint8Array.from(atob(wavBase64), (c) => c.charCodeAt(0));
  const peers = [];
  window.__voicemeshTest = { peers };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      peers.push(this);
    }
  };
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio || constraints.video) throw new DOMException("only a microphone is substituted", "NotSupportedError");
    const audio = new AudioContext();
    const buffer = await audio.decodeAudioData(wav.buffer.slice(0));
    const source = audio.createBufferSource();
    source.buffer = buffer;
    const out = audio.createMediaStreamDestination();
    out.channelCount = 1;
    source.connect(out);
    source.start();
    // the page stops its microphone on hang-up: that stops the WAV too
    for (const t of out.stream.getAudioTracks()) {
      const stop = t.stop.bind(t);
      t.stop = () => {
        stop();
        source.stop();
        audio.close().catch(() => {});
      };
    }
    return out.stream;
  };
}

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: "/usr/bin/firefox-esr",
  headless: true,
  extraPrefsFirefox: {
    // Firefox shows a page's own addresses as ICE host candidates only while the page captures
    // with the user's permission (else it hides them behind mDNS names). The substituted
    // microphone is no capture Firefox knows of: this gives the page what a user's "Allow" does.
    "media.peerconnection.ice.obfuscate_host_addresses": false,
  },
});
const errors = [];
let page = null;
let shot = false;
let step = "page load";
const status = () => page.evaluate(() => window.voicemesh.status);
const shoot = async () => {
  await page.screenshot({ path: opts.screenshot, fullPage: true });
  shot = true;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const readStats = () => page.evaluate(async () => {
  const pc = window.__voicemeshTest.peers.at(-1);
  if (!pc || pc.signalingState === "closed") return [];
  return [...(await pc.getStats()).values()].map((s) => JSON.parse(JSON.stringify(s)));
});
try {
  page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(redact(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(redact(m.text())));
  await page.evaluateOnNewDocument(substituteMicrophone, readFileSync(opts.wav).toString("base64"));
  await page.goto(opts.url, { timeout: 10000 });
  step = "config (GET /v1/softphone/config)";
  await page.waitForFunction(() => window.voicemesh && window.voicemesh.status !== "loading", { timeout: 10000, polling: 50 });
  const result = { errors, connected_after_ms: null, browser: await browser.version(), rtc_stats: [] };
  if (opts.evaluate) {
    step = "evaluate";
    result.evaluated = await page.evaluate(opts.evaluate);
  }
  if (opts.call !== false && (await page.evaluate(() => window.voicemesh.can_call))) {
    step = "connect (Call, WHIP, ICE/DTLS)";
    const started = Date.now();
    await page.click("#call");
    await page.waitForFunction(() => ["connected", "error", "ended"].includes(window.voicemesh.status), { timeout: 15000, polling: 50 });
    result.connected_after_ms = Date.now() - started;
    if ((await status()) === "connected") {
      step = "call";
      const shotAt = (opts.screenshot_at_s ?? opts.seconds * 0.8) * 1000;
      const actions = [...(opts.actions || [])].sort((a, b) => a.at_s - b.at_s);
      const t0 = Date.now();
      while (Date.now() - t0 < opts.seconds * 1000) {
        const elapsed = Date.now() - t0;
        while (actions.length && actions[0].at_s * 1000 <= elapsed) await page.evaluate(actions.shift().eval);
        if (!shot && elapsed >= shotAt && opts.screenshot) await shoot();
        if ((await status()) !== "connected") break;
        await sleep(100);
      }
      result.rtc_stats = await readStats();
      if (opts.hangup !== false && (await status()) === "connected") {
        step = "hang up";
        await page.click("#hangup");
        await page.waitForFunction(() => window.voicemesh.status !== "connected", { timeout: 5000, polling: 50 });
      }
    }
  }
  if (opts.screenshot && !shot) await shoot();
  result.page = await page.evaluate(() => JSON.parse(JSON.stringify(window.voicemesh)));
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (err) {
  let shown = "";
  if (page) {
    shown = await page.evaluate(() => `the page said ${window.voicemesh.status}${window.voicemesh.error ? `: ${window.voicemesh.error}` : ""}`).catch(() => "");
    if (opts.screenshot) await shoot().then(() => (shown += ` (screenshot: ${opts.screenshot})`), () => {});
  }
  const lines = [`firefox_softphone.mjs: ${step} failed: ${err.message || err}`, shown, ...errors].filter(Boolean);
  process.stderr.write(redact(lines.join("\n")) + "\n");
  process.exitCode = 1;
} finally {
  await browser.close();
}
