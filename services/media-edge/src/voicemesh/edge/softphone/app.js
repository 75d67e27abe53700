// The voicemesh softphone: a WHIP call to the edge, the call shown from its data channel
// ("voicemesh": the native protocol's JSON, docs/protocol.md), and each turn's latency
// measured here. No dependencies, no build step. window.voicemesh is what tests read.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const auth = { Authorization: `Bearer ${token}` };
const VOICED_DBFS = -40; // the caller's audio counts as voice above this (as the benches do)
const HEARD_DBFS = -45; // reply audio counts as heard above this
const REPLY_GAP_MS = 250; // remote silence before a sound counts as a new reply's onset
// ?processing=off: the microphone as it is, without the browser's echo cancellation, noise
// suppression and gain control (a headset, or a test that must hear exactly its WAV).
const PROCESSING = params.get("processing") !== "off";

const vm = (window.voicemesh = {
  status: "idle", error: "", session_id: "", agent: "", state: "",
  transcripts: [], replies: [], turns: [], marks: [],
  stats: { rtt_ms: null, jitter_ms: null, packets_lost: 0, inbound_audio_energy: 0, audio_level: 0, playout_ms: null },
  connected_ms: null, ended_reason: "",
  // when each side was audible here, [from_ms, to_ms] since page load (a gap of 250 ms ends a span)
  sound: { caller: [], agent: [] },
});
const loadedAt = performance.now();
let pc = null, channel = null, resource = "", mic = null, audioCtx = null, timers = [];
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
  $("call").disabled = status === "connecting" || status === "connected";
  $("hangup").disabled = !(status === "connecting" || status === "connected");
}

async function loadConfig() {
  if (!token) return setStatus("error", "This page needs a call token: open it as /?token=… (voicemesh token prints one).");
  const resp = await fetch("/v1/softphone/config", { headers: auth });
  if (!resp.ok) return setStatus("error", `${resp.status}: ${(await resp.text()).trim()}`);
  const config = await resp.json();
  const select = $("agent");
  for (const a of config.agents) select.add(new Option(a.name ? `${a.name} (${a.id})` : a.id, a.id));
  if (!config.agents.length) select.add(new Option(config.default_agent || "default agent", config.default_agent || ""));
  select.value = params.get("agent") || config.default_agent || select.value;
  window.voicemeshConfig = config;
}

// ---- levels -----------------------------------------------------------------------------

function meter(stream) {
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 512;
  audioCtx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  return () => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const rms = Math.sqrt(sum / buf.length);
    return rms > 0 ? 20 * Math.log10(rms) : -120;
  };
}

function track(spans, loud, now) {
  const at = Math.round(now - loadedAt);
  const last = spans[spans.length - 1];
  if (!loud) return;
  if (last && at - last[1] <= REPLY_GAP_MS) last[1] = at;
  else spans.push([at, at]);
}

function watchLevels(micLevel, remoteLevel) {
  timers.push(setInterval(() => {
    const now = performance.now();
    const m = micLevel();
    $("mic-level").style.width = `${Math.max(0, Math.min(100, (m + 60) * 2))}%`;
    if (m > VOICED_DBFS) lastVoicedAt = now;
    track(vm.sound.caller, m > VOICED_DBFS, now);
    if (!remoteLevel) return;
    const r = remoteLevel();
    track(vm.sound.agent, r > HEARD_DBFS, now);
    if (r > HEARD_DBFS) {
      if (now - remoteQuietSince >= REPLY_GAP_MS) replyHeard(now);
      remoteQuietSince = Infinity;
    } else if (remoteQuietSince === Infinity) {
      remoteQuietSince = now;
    }
  }, 10));
}

function replyHeard(now) {
  const heardAt = now + (audioCtx.outputLatency || 0) * 1000;
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
  turn.heard_ms = pendingHeard.mouth_to_ear_ms;
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

async function call() {
  resetCall();
  setStatus("connecting");
  try {
    audioCtx = new AudioContext();
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: PROCESSING, noiseSuppression: PROCESSING, autoGainControl: PROCESSING },
    });
    pc = new RTCPeerConnection({ iceServers: (window.voicemeshConfig || {}).ice_servers || [] });
    channel = pc.createDataChannel("voicemesh");
    channel.onmessage = (e) => onMessage(JSON.parse(e.data));
    pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv" });
    const micLevel = meter(mic);
    pc.ontrack = (e) => {
      const stream = e.streams[0] || new MediaStream([e.track]);
      $("remote").srcObject = stream;
      watchLevels(micLevel, meter(stream));
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected" && vm.status === "connecting") {
        vm.connected_ms = Math.round(performance.now() - loadedAt);
        setStatus("connected");
      } else if (pc.connectionState === "failed") {
        setStatus("error", "the connection failed (ICE/DTLS)");
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, 2000);
    const agent = $("agent").value;
    const resp = await fetch(`/v1/whip?agent=${encodeURIComponent(agent)}`, {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) throw new Error(`${resp.status}: ${(await resp.text()).trim()}`);
    resource = resp.headers.get("Location") || "";
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    timers.push(setInterval(pollStats, 1000));
  } catch (err) {
    teardown();
    setStatus("error", String(err.message || err));
  }
}

async function hangup() {
  if (resource) {
    await fetch(resource, { method: "DELETE", headers: auth }).catch(() => {});
  }
  // the `end` message may still arrive; give it a moment, then let go of the connection
  setTimeout(() => { teardown(); if (vm.status !== "error") setStatus("ended"); }, 300);
}

function teardown() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (pc) pc.close();
  if (mic) mic.getTracks().forEach((t) => t.stop());
  pc = null; channel = null; resource = ""; mic = null;
}

function resetCall() {
  Object.assign(vm, {
    session_id: "", agent: "", state: "", transcripts: [], replies: [], turns: [], marks: [], ended_reason: "",
    sound: { caller: [], agent: [] },
  });
  lastVoicedAt = lastOnsetAt = pendingHeard = null;
  speaking.clear();
  lastEnded = null;
  $("lines").replaceChildren();
  $("turns").replaceChildren();
}

// ---- what the edge shows ----------------------------------------------------------------

function onMessage(msg) {
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
  } else if (kind === "timing") {
    const turn = { ...m, received_at: performance.now(), mouth_to_ear_ms: null, heard_ms: null };
    vm.turns.push(turn);
    if (pendingHeard && turn.received_at - pendingHeard.at < 1000) attachHeard(turn);
    renderTurns();
  } else if (kind === "error") {
    $("error").hidden = false;
    $("error").textContent = `${m.code}: ${m.message}`;
  } else if (kind === "end") {
    vm.ended_reason = m.reason || "";
    $("state").textContent = `call ended (${vm.ended_reason})`;
    teardown();
    setStatus("ended");
  }
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
  const scale = Math.max(1000, ...vm.turns.map((t) => Math.max(t.edge_voice_to_voice_ms || 0, t.mouth_to_ear_ms || 0))) * 1.1;
  const pct = (ms) => `${(100 * (ms || 0)) / scale}%`;
  $("turns").replaceChildren(...vm.turns.map((t, i) => {
    const li = document.createElement("li");
    const stages = [["endpoint", t.endpoint_ms], ["stt", t.stt_final_ms], ["token", t.first_token_ms], ["sent", t.edge_voice_to_voice_ms]];
    let from = 0;
    const bars = stages.map(([cls, at]) => {
      const start = from;
      from = Math.max(from, at || 0);
      return `<i class="${cls}" style="left:${pct(start)};width:${pct(from - start)}" title="${cls} ${at || 0} ms"></i>`;
    });
    if (t.mouth_to_ear_ms != null) bars.push(`<i class="heard" style="left:${pct(t.mouth_to_ear_ms)}" title="heard ${t.mouth_to_ear_ms} ms"></i>`);
    const figure = t.mouth_to_ear_ms != null ? `${t.mouth_to_ear_ms} ms to ear` : `${t.edge_voice_to_voice_ms || 0} ms at edge`;
    li.innerHTML = `<span>turn ${i + 1}</span><div class="bar">${bars.join("")}</div><span class="figure">${figure}</span>`;
    return li;
  }));
}

async function pollStats() {
  if (!pc) return;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && s.currentRoundTripTime != null) {
      vm.stats.rtt_ms = Math.round(s.currentRoundTripTime * 1000);
    }
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

$("call").addEventListener("click", call);
$("hangup").addEventListener("click", hangup);
setStatus("idle");
loadConfig().catch((err) => setStatus("error", String(err)));
