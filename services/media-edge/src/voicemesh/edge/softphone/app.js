// The voicemesh softphone: a WHIP call to the edge, the call shown from its data channel
// ("voicemesh": the native protocol's JSON, docs/protocol.md), and each turn's latency
// measured here. No dependencies, no build step. window.voicemesh is what tests read; the
// arithmetic over what is measured is in measure.js.

import { STAGES, dbfs, roundTripMs, track, waterfall } from "./measure.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const auth = { Authorization: `Bearer ${token}` };
const VOICED_DBFS = -40; // the caller's audio counts as voice above this (as the benches do)
const HEARD_DBFS = -45; // reply audio counts as heard above this
const REPLY_GAP_MS = 250; // remote silence before a sound counts as a new reply's onset
const DIGITS = "123456789*0#";
// ?processing=off: the microphone as it is, without the browser's echo cancellation, noise
// suppression and gain control (a headset, or a test that must hear exactly its WAV).
const PROCESSING = params.get("processing") !== "off";

const vm = (window.voicemesh = {
  status: "loading", error: "", can_call: false, session_id: "", agent: "", state: "",
  transcripts: [], replies: [], turns: [], marks: [], fillers: [], notices: [], dtmf_sent: "",
  stats: { rtt_ms: null, jitter_ms: null, packets_lost: 0, inbound_audio_energy: 0, audio_level: 0, playout_ms: null },
  ice_transport_policy: "", connected_ms: null, ended_reason: "",
  // when each side was audible here, [from_ms, to_ms] since page load (a gap of 250 ms ends a span)
  sound: { caller: [], agent: [] },
});
const loadedAt = performance.now();
let config = { agents: [], ice_servers: [] };
// The call being placed or in progress: everything it holds, so one teardown lets it all go.
let current = null;
let lastVoicedAt = null, lastOnsetAt = null, remoteQuietSince = performance.now(), pendingHeard = null;
const speaking = new Set(); // responses whose audio has started and not ended
// A barge-in ends the reply's playout and then says `user_speaking`; a reply that simply
// finished says `listening` first. The reply whose end came last waits for that word.
let lastEnded = null;

function setStatus(status, error = "") {
  vm.status = status;
  vm.error = error;
  $("status").textContent = status;
  $("status").className = `badge ${status}`;
  $("error").hidden = !error;
  $("error").textContent = error;
  const live = status === "connecting" || status === "connected";
  $("call").disabled = live || !vm.can_call;
  $("hangup").disabled = !live;
  $("agent").disabled = live || !$("agent").options.length;
  for (const key of $("keypad").children) key.disabled = status !== "connected";
}

async function loadConfig() {
  if (!token) return setStatus("error", "This page needs a call token: open it as /?token=… (voicemesh token prints one).");
  const resp = await fetch("/v1/softphone/config", { headers: auth });
  if (!resp.ok) {
    const hint = resp.status === 401 || resp.status === 403 ? " Get a new address with `voicemesh token`." : "";
    return setStatus("error", `${resp.status}: ${(await resp.text()).trim().replace(/\.$/, "")}.${hint}`);
  }
  config = await resp.json();
  const agents = config.agents || [];
  const wanted = params.get("agent") || "";
  const select = $("agent");
  for (const a of agents) select.add(new Option(a.name ? `${a.name} (${a.id})` : a.id, a.id));
  if (!agents.length) {
    // the edge names no agents: it takes the one asked for, or its default
    const only = wanted || config.default_agent || "";
    select.add(new Option(only || "the edge's default agent", only));
  } else if (wanted && !agents.some((a) => a.id === wanted)) {
    const pick = new Option("pick an agent…", "", true, true);
    pick.disabled = true;
    select.add(pick, 0);
    const known = agents.map((a) => a.id).join(", ");
    return setStatus("error", `There is no agent "${wanted}" (the address asks for it). Known agents: ${known}. Pick one to call.`);
  } else {
    select.value = wanted || config.default_agent || select.value;
  }
  vm.can_call = true;
  setStatus("idle");
}

function agentPicked() {
  vm.can_call = true; // an agent the edge named: the placeholder cannot be picked
  if (vm.status === "error") setStatus("idle");
}

// ---- levels -----------------------------------------------------------------------------

function meter(audio, stream) {
  const analyser = audio.createAnalyser();
  analyser.fftSize = 512;
  audio.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  return () => {
    analyser.getFloatTimeDomainData(buf);
    return dbfs(buf);
  };
}

function watchLevels(c, micLevel, remoteLevel) {
  c.timers.push(setInterval(() => {
    const now = performance.now();
    const m = micLevel();
    $("mic-level").style.width = `${Math.max(0, Math.min(100, (m + 60) * 2))}%`;
    if (m > VOICED_DBFS) lastVoicedAt = now;
    track(vm.sound.caller, m > VOICED_DBFS, Math.round(now - loadedAt), REPLY_GAP_MS);
    const r = remoteLevel();
    track(vm.sound.agent, r > HEARD_DBFS, Math.round(now - loadedAt), REPLY_GAP_MS);
    if (r > HEARD_DBFS) {
      if (now - remoteQuietSince >= REPLY_GAP_MS) replyHeard(now, c.audio.outputLatency || 0);
      remoteQuietSince = Infinity;
    } else if (remoteQuietSince === Infinity) {
      remoteQuietSince = now;
    }
  }, 10));
}

function replyHeard(now, outputLatencyS) {
  const heardAt = now + outputLatencyS * 1000;
  // only a reply to something the caller said since the last reply began is a turn's
  const spoke = lastVoicedAt !== null && (lastOnsetAt === null || lastVoicedAt > lastOnsetAt);
  lastOnsetAt = now;
  if (!spoke) return;
  pendingHeard = { at: heardAt, mouth_to_ear_ms: Math.round(heardAt - lastVoicedAt) };
  const turn = vm.turns.find((t) => t.mouth_to_ear_ms == null && now - t.received_at < 3000);
  if (turn) attachHeard(turn);
}

function attachHeard(turn) {
  turn.mouth_to_ear_ms = pendingHeard.mouth_to_ear_ms;
  turn.waterfall = waterfall(turn);
  pendingHeard = null;
  renderTurns();
}

// ---- the call ---------------------------------------------------------------------------

function iceGathered(conn, limitMs) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => conn.iceGatheringState === "complete" && resolve();
    conn.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, limitMs);
  });
}

async function openMicrophone() {
  if (!navigator.mediaDevices) throw new Error("The microphone needs a secure page: open it over https, or on localhost.");
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: PROCESSING, noiseSuppression: PROCESSING, autoGainControl: PROCESSING },
    });
  } catch (err) {
    if (err.name === "NotFoundError") throw new Error("No microphone was found.");
    throw new Error(`The microphone was refused (${err.name}): allow it for this page and call again.`);
  }
}

async function call() {
  resetCall();
  const c = (current = { abort: new AbortController(), pc: null, channel: null, mic: null, audio: null, resource: "", timers: [] });
  const stillWanted = () => { if (c.abort.signal.aborted) throw c.abort.signal.reason; };
  setStatus("connecting");
  try {
    c.audio = new AudioContext();
    c.mic = await openMicrophone();
    stillWanted();
    c.pc = new RTCPeerConnection({ iceServers: config.ice_servers || [], iceTransportPolicy: config.ice_transport_policy || "all" });
    vm.ice_transport_policy = c.pc.getConfiguration().iceTransportPolicy;
    c.channel = c.pc.createDataChannel("voicemesh");
    c.channel.onmessage = (e) => onMessage(c, e.data);
    c.pc.addTransceiver(c.mic.getAudioTracks()[0], { direction: "sendrecv" });
    const micLevel = meter(c.audio, c.mic);
    c.pc.ontrack = (e) => {
      const stream = e.streams[0] || new MediaStream([e.track]);
      $("remote").srcObject = stream;
      watchLevels(c, micLevel, meter(c.audio, stream));
    };
    c.pc.onconnectionstatechange = () => connectionChanged(c);
    await c.pc.setLocalDescription(await c.pc.createOffer());
    await iceGathered(c.pc, 2000);
    stillWanted();
    const resp = await fetch(`/v1/whip?agent=${encodeURIComponent($("agent").value)}`, {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/sdp" },
      body: c.pc.localDescription.sdp,
      signal: c.abort.signal,
    });
    const body = await resp.text();
    if (resp.status !== 201) throw new Error(`The edge refused the call (${resp.status}): ${body.trim()}`);
    c.resource = resp.headers.get("Location") || "";
    stillWanted();
    await c.pc.setRemoteDescription({ type: "answer", sdp: body });
    c.timers.push(setInterval(() => pollStats(c), 1000));
  } catch (err) {
    const hungUp = c.abort.signal.aborted;
    release(c);
    if (!hungUp) setStatus("error", String(err.message || err));
  }
}

function connectionChanged(c) {
  if (current !== c) return;
  if (c.pc.connectionState === "connected" && vm.status === "connecting") {
    vm.connected_ms = Math.round(performance.now() - loadedAt);
    setStatus("connected");
  } else if (c.pc.connectionState === "failed") {
    release(c);
    setStatus("error", "The connection failed (ICE/DTLS): no network path to the edge's media.");
  }
}

async function hangup() {
  const c = current;
  if (!c) return;
  $("hangup").disabled = true;
  if (vm.status === "connecting") {
    c.abort.abort(new Error("hung up"));
    release(c);
    vm.ended_reason = "hung up while connecting";
    return setStatus("ended");
  }
  const resource = c.resource;
  c.resource = "";
  if (resource) await fetch(resource, { method: "DELETE", headers: auth }).catch(() => {});
  // the `end` message may still arrive; give it a moment, then let go of the connection
  setTimeout(() => {
    if (current !== c) return; // the `end` came, and let go of it
    release(c);
    setStatus("ended");
  }, 300);
}

/** Let go of everything the call holds (safe to call twice); hang up at the edge if it has the call. */
function release(c) {
  for (const t of c.timers) clearInterval(t);
  c.timers = [];
  if (c.resource) fetch(c.resource, { method: "DELETE", headers: auth }).catch(() => {});
  if (c.pc) c.pc.close();
  if (c.mic) c.mic.getTracks().forEach((t) => t.stop());
  if (c.audio && c.audio.state !== "closed") c.audio.close().catch(() => {});
  Object.assign(c, { pc: null, channel: null, mic: null, audio: null, resource: "" });
  $("mic-level").style.width = "0";
  if (current === c) current = null;
}

function resetCall() {
  Object.assign(vm, {
    session_id: "", agent: "", state: "", transcripts: [], replies: [], turns: [], marks: [], fillers: [], notices: [],
    dtmf_sent: "", ended_reason: "", connected_ms: null, sound: { caller: [], agent: [] },
  });
  lastVoicedAt = lastOnsetAt = pendingHeard = null;
  remoteQuietSince = performance.now();
  speaking.clear();
  lastEnded = null;
  $("lines").replaceChildren();
  $("turns").replaceChildren();
  $("notice").hidden = true;
  $("dtmf-sent").textContent = "";
}

function sendDigit(digit) {
  const channel = current && current.channel;
  if (vm.status !== "connected" || !channel || channel.readyState !== "open") return;
  channel.send(JSON.stringify({ dtmf: { digits: digit } }));
  vm.dtmf_sent += digit;
  $("dtmf-sent").textContent = `sent ${vm.dtmf_sent}`;
}

// ---- what the edge shows ----------------------------------------------------------------

function onMessage(c, data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return notice("bad_message", "the edge sent a data channel message that is not JSON");
  }
  const [kind] = Object.keys(msg);
  const m = msg[kind] || {};
  if (kind === "ready") {
    vm.session_id = m.session_id || "";
    vm.agent = m.agent || "";
  } else if (kind === "state") {
    vm.state = m.state || "";
    $("state").textContent = `${vm.agent || "agent"}: ${vm.state.replace("_", " ")}`;
    if (vm.state === "user_speaking") {
      for (const rid of speaking) markInterrupted(rid);
      if (lastEnded) markInterrupted(lastEnded);
    }
    lastEnded = null;
  } else if (kind === "transcript") {
    upsert(vm.transcripts, "turn_id", m.turn_id, { turn_id: m.turn_id || "", text: m.text || "", final: !!m.final });
    line(`t-${m.turn_id}`, "caller", m.text || "", !m.final);
  } else if (kind === "response") {
    const reply = upsert(vm.replies, "response_id", m.response_id, { response_id: m.response_id, turn_id: m.turn_id || "" });
    reply.text = m.final ? m.text || "" : (reply.text || "") + (m.text || "");
    reply.final = !!m.final;
    reply.interrupted = !!reply.interrupted;
    line(`r-${m.response_id}`, "agent", reply.text, false, reply.interrupted);
  } else if (kind === "mark") {
    vm.marks.push({ response_id: m.response_id, name: m.name, at_ms: Math.round(performance.now() - loadedAt) });
    if (m.name === "start") speaking.add(m.response_id);
    if (m.name === "end") {
      speaking.delete(m.response_id);
      lastEnded = m.response_id;
    }
  } else if (kind === "filler") {
    // The reply is late: the edge plays a short phrase while the agent thinks (not a reply).
    if (m.name === "start") {
      vm.fillers.push({ turn_id: m.turn_id || "", text: m.text || "" });
      line(`f-${m.turn_id}-${vm.fillers.length}`, "agent filler", m.text || "", false);
    }
  } else if (kind === "timing") {
    const turn = { ...m, received_at: performance.now(), mouth_to_ear_ms: null };
    turn.waterfall = waterfall(turn);
    vm.turns.push(turn);
    if (pendingHeard && turn.received_at - pendingHeard.at < 1000) attachHeard(turn);
    renderTurns();
  } else if (kind === "error") {
    notice(m.code || "error", m.message || "");
  } else if (kind === "end") {
    vm.ended_reason = m.reason || "";
    $("state").textContent = `call ended (${vm.ended_reason})`;
    c.resource = ""; // the edge has let go already
    release(c);
    setStatus("ended");
  }
}

/** Something the edge reported during the call; the call goes on. */
function notice(code, message) {
  vm.notices.push({ code, message });
  $("notice").hidden = false;
  $("notice").textContent = `The edge said ${code}: ${message}`;
}

function markInterrupted(rid) {
  const reply = vm.replies.find((r) => r.response_id === rid);
  if (!reply) return;
  reply.interrupted = true;
  line(`r-${rid}`, "agent", reply.text, false, true);
}

function upsert(list, key, value, init) {
  let item = list.find((x) => x[key] === value);
  if (!item) list.push((item = init));
  else Object.assign(item, init); // a reply's text is kept: its init has none
  return item;
}

function line(id, who, text, partial, interrupted = false) {
  let li = document.getElementById(id);
  if (!li) {
    li = document.createElement("li");
    li.id = id;
    $("lines").append(li);
  }
  li.className = `${who}${partial ? " partial" : ""}${interrupted ? " interrupted" : ""}`;
  li.textContent = text;
  li.scrollIntoView({ block: "nearest" });
}

function renderTurns() {
  const label = Object.fromEntries(STAGES.map((s) => [s.stage, s.label]));
  const ends = vm.turns.flatMap((t) => t.waterfall.map((s) => s.to_ms));
  const scale = Math.max(1000, ...ends) * 1.1;
  const pct = (ms) => `${(100 * Math.max(0, ms)) / scale}%`;
  $("turns").replaceChildren(...vm.turns.map((t, i) => {
    const bar = document.createElement("div");
    bar.className = "bar";
    for (const s of t.waterfall) {
      const seg = document.createElement("i");
      seg.className = s.stage;
      seg.style.left = pct(s.from_ms);
      seg.style.width = pct(s.to_ms - s.from_ms);
      seg.title = `${label[s.stage]}: ${s.to_ms - s.from_ms} ms (done ${s.to_ms} ms after your last word)`;
      bar.append(seg);
    }
    const name = document.createElement("span");
    name.textContent = `turn ${i + 1}`;
    const figure = document.createElement("span");
    figure.className = "figure";
    const edge = document.createElement("small");
    edge.textContent = `${t.edge_voice_to_voice_ms || 0} ms at edge`;
    figure.append(t.mouth_to_ear_ms != null ? `${t.mouth_to_ear_ms} ms to ear` : "not heard yet", edge);
    const li = document.createElement("li");
    li.append(name, bar, figure);
    return li;
  }));
}

async function pollStats(c) {
  if (!c.pc) return;
  const report = await c.pc.getStats();
  vm.stats.rtt_ms = roundTripMs(report) ?? vm.stats.rtt_ms;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      vm.stats.jitter_ms = Math.round((s.jitter || 0) * 1000);
      vm.stats.packets_lost = s.packetsLost || 0;
      vm.stats.inbound_audio_energy = s.totalAudioEnergy || 0;
      vm.stats.audio_level = s.audioLevel || 0;
      if (s.jitterBufferEmittedCount) vm.stats.playout_ms = Math.round((1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount);
    }
  });
  const ms = (v) => (v == null ? "—" : `${v} ms`);
  $("q-rtt").textContent = ms(vm.stats.rtt_ms);
  $("q-jitter").textContent = ms(vm.stats.jitter_ms);
  $("q-lost").textContent = String(vm.stats.packets_lost);
  $("q-playout").textContent = ms(vm.stats.playout_ms);
}

for (const { stage, label } of STAGES) {
  const key = document.createElement("span");
  key.className = `k ${stage}`;
  key.textContent = label;
  $("legend").append(key);
}
for (const digit of DIGITS) {
  const key = document.createElement("button");
  key.textContent = digit;
  key.addEventListener("click", () => sendDigit(digit));
  $("keypad").append(key);
}
$("call").addEventListener("click", call);
$("hangup").addEventListener("click", hangup);
$("agent").addEventListener("change", agentPicked);
setStatus("loading");
loadConfig().catch((err) => setStatus("error", `The page could not load its settings from the edge: ${err.message || err}`));
