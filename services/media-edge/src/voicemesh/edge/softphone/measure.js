// What the softphone measures, as plain functions over numbers: no DOM, no clock, no
// connection. app.js feeds them; a test can import this module and call them directly.

// A turn's stages, in the order they stack: the edge's `timing` durations, then what is left
// to the edge's first reply frame, then (measured here) the way to the caller's ear.
export const STAGES = [
  { stage: "endpoint", field: "endpoint_ms", label: "deciding the turn ended" },
  { stage: "stt", field: "stt_final_ms", label: "final transcript" },
  { stage: "reasoning", field: "first_token_ms", label: "reasoning to first token" },
  { stage: "tts", field: "tts_first_audio_ms", label: "synthesis to first audio" },
  { stage: "send", label: "sending the first frame" },
  { stage: "network", label: "network and playout to your ear" },
];

/** The turn's waterfall, in ms since the caller's last voiced audio: [{stage, from_ms, to_ms}],
 * each stage starting where the one before ended. The edge's four stages are durations (each
 * rounded on its own, so each end is held at edge_voice_to_voice_ms); `send` runs to
 * edge_voice_to_voice_ms; `network` to the page's mouth_to_ear_ms, when it has one. */
export function waterfall(turn) {
  const edge = Math.max(0, turn.edge_voice_to_voice_ms || 0);
  const stages = [];
  let at = 0;
  for (const { stage, field } of STAGES.slice(0, 4)) {
    const to = Math.min(edge, at + Math.max(0, turn[field] || 0));
    stages.push({ stage, from_ms: at, to_ms: to });
    at = to;
  }
  stages.push({ stage: "send", from_ms: at, to_ms: edge });
  if (turn.mouth_to_ear_ms != null) stages.push({ stage: "network", from_ms: edge, to_ms: turn.mouth_to_ear_ms });
  return stages;
}

/** The round trip in ms: the nominated candidate pair's, else (Firefox) RTCP's. */
export function roundTripMs(report) {
  let pair = null, rtcp = null;
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && s.currentRoundTripTime != null) pair = s.currentRoundTripTime;
    if (s.type === "remote-inbound-rtp" && s.kind === "audio" && s.roundTripTime != null) rtcp = s.roundTripTime;
  });
  const rtt = pair ?? rtcp;
  return rtt == null ? null : Math.round(rtt * 1000);
}

/** The level of a block of samples (-1..1), in dBFS. */
export function dbfs(samples) {
  let sum = 0;
  for (const x of samples) sum += x * x;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? 20 * Math.log10(rms) : -120;
}

/** Grow `spans` ([from_ms, to_ms], oldest first) by a loud moment at `atMs`: a gap of more
 * than `gapMs` since the last span's end starts a new span. */
export function track(spans, loud, atMs, gapMs) {
  if (!loud) return;
  const last = spans[spans.length - 1];
  if (last && atMs - last[1] <= gapMs) last[1] = atMs;
  else spans.push([atMs, atMs]);
}
