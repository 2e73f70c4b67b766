// The calls page: fills /console's shell from the calls API and keeps it current from the
// event stream. Every value from a record is written as text (textContent, attributes set
// one by one), never parsed as HTML: callers and providers influence much of it.
"use strict";

(() => {
  const API = "/api/calls";
  const SIGN_IN = "/console/sign-in";
  const PAGE_SIZE = 50;
  const FILTERS = ["since", "until", "route", "provider", "outcome", "direction"];
  const $ = (id) => document.getElementById(id);

  const live = new Map(); // id -> record of the calls live now
  const recent = new Map(); // id -> record of the calls listed under "Recent calls"
  let cursor = null;
  let openId = null;
  let lastToken = null;

  // --- helpers ------------------------------------------------------------------------------

  function node(tag, text, className) {
    const element = document.createElement(tag);
    if (text !== undefined && text !== null) element.textContent = String(text);
    if (className) element.className = className;
    return element;
  }

  class SignedOut extends Error {}

  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (response.status === 401) {
      window.location.assign(SIGN_IN);
      throw new SignedOut("signed out");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    return body;
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "short",
    timeStyle: "medium",
  });

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : timeFormat.format(date);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds === "") return "";
    const total = Math.round(Number(seconds));
    if (!Number.isFinite(total)) return String(seconds);
    const minutes = Math.floor(total / 60);
    const rest = String(total % 60).padStart(2, "0");
    return minutes ? `${minutes}m ${rest}s` : `${total}s`;
  }

  function elapsed(iso) {
    const start = new Date(iso).getTime();
    return Number.isNaN(start) ? "" : duration(Math.max(0, (Date.now() - start) / 1000));
  }

  function newestFirst(a, b) {
    return (b.receivedAt || "").localeCompare(a.receivedAt || "");
  }

  function detailLink(call, text) {
    const link = node("a", text);
    link.setAttribute("href", `#call=${encodeURIComponent(call.id)}`);
    return link;
  }

  // --- filters (kept in the page's query string, so a reload or a shared link keeps them) ---

  function filters() {
    const query = new URLSearchParams(window.location.search);
    const chosen = {};
    for (const name of FILTERS) {
      const value = (query.get(name) || "").trim();
      if (value) chosen[name] = value;
    }
    return chosen;
  }

  function showFilters(chosen) {
    const form = $("filters");
    for (const name of FILTERS) {
      if (chosen[name] !== undefined) form.elements[name].value = chosen[name];
    }
  }

  function apiFilters(chosen) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(chosen)) {
      // datetime-local has no zone: it means the browser's; the API wants one.
      if (name === "since" || name === "until") {
        const date = new Date(value);
        if (!Number.isNaN(date.getTime())) params.set(name, date.toISOString());
      } else {
        params.set(name, value);
      }
    }
    return params;
  }

  function matches(call, chosen) {
    for (const name of ["route", "provider", "outcome", "direction"]) {
      if (chosen[name] !== undefined && call[name] !== chosen[name]) return false;
    }
    const received = new Date(call.receivedAt).getTime();
    if (chosen.since && received < new Date(chosen.since).getTime()) return false;
    if (chosen.until && received >= new Date(chosen.until).getTime()) return false;
    return true;
  }

  // --- live calls ---------------------------------------------------------------------------

  function liveRow(call) {
    const row = node("tr");
    row.dataset.id = call.id;
    const received = node("td");
    received.append(detailLink(call, when(call.receivedAt)));
    const since = node("td", elapsed(call.receivedAt), "elapsed");
    since.dataset.since = call.receivedAt || "";
    row.append(
      received,
      since,
      node("td", call.provider),
      node("td", call.route),
      node("td", call.caller, "number"),
      node("td", call.called, "number"),
      node("td", call.direction),
    );
    return row;
  }

  function renderLive() {
    const calls = [...live.values()].sort(newestFirst);
    $("live-rows").replaceChildren(...calls.map(liveRow));
    $("live-count").textContent = String(calls.length);
    $("live-empty").hidden = calls.length > 0;
  }

  function tickElapsed() {
    for (const cell of document.querySelectorAll("#live-rows .elapsed")) {
      cell.textContent = elapsed(cell.dataset.since);
    }
  }

  // --- recent calls -------------------------------------------------------------------------

  function recentRow(call) {
    const row = node("tr");
    row.dataset.id = call.id;
    row.dataset.state = call.state || "";
    const received = node("td");
    received.append(detailLink(call, when(call.receivedAt)));
    const outcome = node("td");
    outcome.append(node("span", call.outcome, `tag outcome-${call.outcome}`));
    const state = node("td");
    state.append(node("span", call.state, `tag state-${call.state}`));
    row.append(
      received,
      node("td", call.provider),
      node("td", call.route),
      node("td", call.caller, "number"),
      node("td", call.called, "number"),
      outcome,
      state,
      node("td", duration(call.durationSeconds), "num"),
      node("td", call.endReason),
      node("td", call.shortSummary, "summary"),
    );
    if (call.id === openId) row.classList.add("open");
    return row;
  }

  function renderRecent() {
    const calls = [...recent.values()].sort(newestFirst);
    $("recent-rows").replaceChildren(...calls.map(recentRow));
    $("recent-empty").hidden = calls.length > 0;
    $("more").hidden = cursor === null;
  }

  async function loadRecent(more) {
    const params = apiFilters(filters());
    params.set("limit", String(PAGE_SIZE));
    if (more && cursor) params.set("cursor", cursor);
    const error = $("recent-error");
    try {
      const page = await getJSON(`${API}?${params}`);
      for (const call of page.calls) recent.set(call.id, call);
      cursor = page.nextCursor;
      error.hidden = true;
    } catch (failure) {
      if (failure instanceof SignedOut) return;
      error.textContent = `Could not load the calls: ${failure.message}`;
      error.hidden = false;
    }
    renderRecent();
  }

  // --- one call -----------------------------------------------------------------------------

  const FIELDS = [
    ["Call", "id"],
    ["Provider", "provider"],
    ["Provider call id", "providerCallId"],
    ["Ultravox call id", "ultravoxCallId"],
    ["Direction", "direction"],
    ["Route", "route"],
    ["Caller", "caller"],
    ["Called", "called"],
    ["Outcome", "outcome"],
    ["State", "state"],
    ["Received", "receivedAt", when],
    ["Answered", "answeredAt", when],
    ["Joined", "joinedAt", when],
    ["Ended", "endedAt", when],
    ["Ended by", "endedBy"],
    ["End reason", "endReason"],
    ["Provider status", "providerStatus"],
    ["Hang-up cause", "hangupCause"],
    ["Duration", "durationSeconds", duration],
    ["Billed", "billedDurationSeconds", duration],
    ["Billing", "billingStatus"],
    ["Summary", "shortSummary"],
  ];

  function renderFields(call) {
    const list = $("detail-fields");
    list.replaceChildren();
    for (const [label, key, format] of FIELDS) {
      const value = call[key];
      if (value === null || value === undefined || value === "") continue;
      list.append(node("dt", label), node("dd", format ? format(value) : value));
    }
    const delivery = call.delivery || {};
    if (delivery.status) {
      const attempts = delivery.attempts ? ` after ${delivery.attempts} attempt(s)` : "";
      const error = delivery.error ? `: ${delivery.error}` : "";
      list.append(node("dt", "Summary sent"), node("dd", `${delivery.status}${attempts}${error}`));
    }
  }

  function renderTimeline(timeline) {
    $("timeline").replaceChildren(
      ...timeline.map((event) => {
        const item = node("li");
        item.append(
          node("time", when(event.at)),
          node("span", event.source, "source"),
          node("span", event.kind, "kind"),
        );
        const detail = event.detail && Object.keys(event.detail).length ? event.detail : null;
        if (detail) item.append(node("code", JSON.stringify(detail)));
        return item;
      }),
    );
  }

  const SPEAKERS = { agent: "Agent", user: "Caller", tool_call: "Tool call", tool_result: "Tool" };

  function renderTranscript(body) {
    const note = $("transcript-note");
    const messages = body.transcript || [];
    if (body.transcriptError) note.textContent = body.transcriptError;
    else if (!messages.length) note.textContent = "No messages.";
    note.hidden = Boolean(messages.length) && !body.transcriptError;
    $("transcript").replaceChildren(
      ...messages.map((message) => {
        const item = node("li", null, `role-${message.role}`);
        const speaker = SPEAKERS[message.role] || message.role;
        const name = message.toolName ? `${speaker} ${message.toolName}` : speaker;
        item.append(node("span", name, "speaker"), node("p", message.text));
        return item;
      }),
    );
  }

  async function showDetail(id, withTranscript) {
    const panel = $("detail");
    const error = $("detail-error");
    const query = withTranscript ? "?transcript=true" : "";
    try {
      const body = await getJSON(`${API}/${encodeURIComponent(id)}${query}`);
      if (openId !== id) return; // another call was opened meanwhile
      $("detail-title").textContent = `Call from ${body.call.caller || "unknown"}`;
      renderFields(body.call);
      renderTimeline(body.timeline);
      if (withTranscript) renderTranscript(body);
      panel.dataset.state = body.call.state || "";
      error.hidden = true;
    } catch (failure) {
      if (failure instanceof SignedOut) return;
      error.textContent = `Could not load the call: ${failure.message}`;
      error.hidden = false;
    }
    panel.hidden = false;
  }

  function openFromHash() {
    const match = /^#call=(.+)$/.exec(window.location.hash);
    const id = match ? decodeURIComponent(match[1]) : null;
    openId = id;
    for (const row of document.querySelectorAll("#recent-rows tr")) {
      row.classList.toggle("open", row.dataset.id === id);
    }
    if (id === null) {
      $("detail").hidden = true;
      return;
    }
    $("detail").dataset.state = "";
    $("transcript-note").textContent = "Loading…";
    $("transcript-note").hidden = false;
    $("transcript").replaceChildren();
    showDetail(id, true);
  }

  // --- live updates -------------------------------------------------------------------------

  function apply(call) {
    if (call.state === "live") live.set(call.id, call);
    else live.delete(call.id);
    renderLive();
    if (recent.has(call.id) || matches(call, filters())) {
      recent.set(call.id, call);
      renderRecent();
    }
    if (call.id === openId) {
      // The transcript again once the call has ended: then it is complete.
      const ended = call.state === "ended" && $("detail").dataset.state !== "ended";
      showDetail(call.id, ended);
    }
  }

  function connection(state, text) {
    const status = $("connection");
    status.dataset.state = state;
    status.textContent = text;
  }

  function listen(after) {
    lastToken = after;
    const stream = new EventSource(`${API}/events?after=${encodeURIComponent(after)}`);
    stream.addEventListener("open", () => connection("live", "Live"));
    stream.addEventListener("call", (event) => {
      lastToken = event.lastEventId || lastToken;
      apply(JSON.parse(event.data));
    });
    stream.addEventListener("error", () => {
      if (stream.readyState !== EventSource.CLOSED) {
        connection("reconnecting", "Reconnecting…"); // the browser retries with Last-Event-ID
        return;
      }
      // Refused (signed out, or too many streams): find out which, then try again.
      connection("reconnecting", "Disconnected: retrying…");
      getJSON(`${API}?limit=1`)
        .then(() => window.setTimeout(() => listen(lastToken), 5000))
        .catch((failure) => {
          if (!(failure instanceof SignedOut)) window.setTimeout(() => listen(lastToken), 5000);
        });
    });
  }

  async function start() {
    showFilters(filters());
    $("more").addEventListener("click", () => loadRecent(true));
    $("detail-close").addEventListener("click", (event) => {
      event.preventDefault();
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
      openFromHash();
    });
    window.addEventListener("hashchange", openFromHash);
    try {
      // The token of now first, so nothing that happens while the lists load is missed.
      const { next } = await getJSON(`${API}/changes`);
      const current = await getJSON(`${API}?state=live&limit=200`);
      for (const call of current.calls) live.set(call.id, call);
      renderLive();
      await loadRecent(false);
      listen(next);
    } catch (failure) {
      if (failure instanceof SignedOut) return;
      connection("error", `Cannot reach the calls API: ${failure.message}`);
    }
    openFromHash();
    window.setInterval(tickElapsed, 1000);
  }

  start();
})();
