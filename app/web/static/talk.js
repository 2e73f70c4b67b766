// The /talk page: start a web call of this page's route, join it with the Ultravox client SDK,
// show its status and live transcript, and end it.
import { UltravoxSession } from "./vendor/ultravox-client/index.js";

const main = document.getElementById("talk");
const button = document.getElementById("call");
const statusLine = document.getElementById("status");
const transcript = document.getElementById("transcript");
const route = main.dataset.route;
const contextFields = (main.dataset.contextFields || "").split(" ").filter(Boolean);

const STATUS_TEXT = {
  disconnected: "Call ended",
  disconnecting: "Ending the call…",
  connecting: "Connecting…",
  idle: "Connected",
  listening: "Listening",
  thinking: "Thinking…",
  speaking: "Speaking",
};

let session = null;
// The live call's id and the secret that ends it, until the service is told it ended.
let call = null;

function show(state, text) {
  main.dataset.status = state;
  statusLine.textContent = text;
}

// The page passes the route's declared context fields from its own query string
// (/talk/support?page=pricing), and a token minted by the site's backend from its fragment
// (#token=...), which browsers never send to any server.
function requestBody() {
  const query = new URLSearchParams(window.location.search);
  const context = {};
  for (const field of contextFields) {
    if (query.has(field)) context[field] = query.get(field);
  }
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  return JSON.stringify(token ? { route, context, token } : { route, context });
}

function showTranscripts() {
  transcript.replaceChildren(
    ...session.transcripts.map((line) => {
      const item = document.createElement("li");
      item.className = `${line.speaker}${line.isFinal ? "" : " partial"}`;
      item.textContent = line.text;
      return item;
    }),
  );
}

// Tell the service the call is over, so its place is free for the next visitor at once (not
// only when the call's maxDuration could have run out). Once per call; `keepalive` lets the
// request outlive a closing tab. A failure is harmless: the call ends by itself.
function releaseCall(keepalive = false) {
  if (!call) return;
  const { id, endSecret } = call;
  call = null;
  fetch(`/web/calls/${encodeURIComponent(id)}/end`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ endSecret }),
    keepalive,
  }).catch(() => {});
}

function onStatus() {
  const status = session.status;
  if (status === "disconnected") {
    session = null;
    releaseCall();
    button.textContent = "Start the call";
    button.disabled = false;
    show("ended", STATUS_TEXT.disconnected);
    return;
  }
  show("live", STATUS_TEXT[status] || status);
}

async function start() {
  button.disabled = true;
  transcript.replaceChildren();
  show("starting", "Starting the call…");
  let response;
  try {
    response = await fetch("/web/calls", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: requestBody(),
    });
  } catch {
    show("error", "The service cannot be reached. Try again in a moment.");
    button.disabled = false;
    return;
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const wait = response.headers.get("retry-after");
    const detail = typeof answer.detail === "string" ? answer.detail : `refused (${response.status})`;
    show("refused", wait ? `${detail} (in ${wait} s)` : detail);
    button.disabled = false;
    return;
  }
  session = new UltravoxSession();
  session.addEventListener("status", onStatus);
  session.addEventListener("transcripts", showTranscripts);
  main.dataset.callId = answer.callId;
  call = { id: answer.callId, endSecret: answer.endSecret };
  session.joinCall(answer.joinUrl);
  button.textContent = "End the call";
  button.disabled = false;
}

async function end() {
  button.disabled = true;
  await session.leaveCall();
  releaseCall();
}

button.addEventListener("click", () => (session ? end() : start()));
window.addEventListener("pagehide", () => releaseCall(true));
button.disabled = false;
show("ready", "Ready");
