// pier's dashboard. It reads the running pier through the admin API once a
// second and steers it through the same API, with the token kept for this
// tab (sessionStorage). No framework, no build step: the DOM is built with
// createElement and textContent, so nothing the proxy reports (a client's
// address, an error) is ever parsed as HTML, and no inline script or style
// is needed (the Content-Security-Policy forbids both).
"use strict";

(() => {
  const POLL_MS = 1000; // the bound: at most a poll a second
  const PAGE = 50; // sessions per page
  const TOKEN_KEY = "pier.token";
  const FLASH_MS = 3000; // how long a member's changed row stays highlighted
  const HISTORY_MS = 5000; // how often the sparklines' history is read
  const HOLD_MAX_MS = 10000; // the longest a press holds the renders

  const $ = (sel) => document.querySelector(sel);

  // el builds an element: attrs are attributes (class, data-*, ...) or
  // properties for on*, children are nodes or text.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // patch makes the children of live look like nodes, reusing live's
  // elements: the same element (by data-key, else the same tag in the same
  // place) keeps its identity and gets only its attributes and text
  // changed. A person's click on a button is a press and a release on
  // the same element: a button replaced between the two is a click lost,
  // so a poll never replaces what it can update.
  function patch(live, nodes) {
    const keyed = new Map();
    for (const c of live.children) {
      const k = c.getAttribute("data-key");
      if (k !== null) keyed.set(k, c);
    }
    let cur = live.firstChild;
    for (const n of nodes) {
      const k = n.nodeType === 1 ? n.getAttribute("data-key") : null;
      let match = null;
      if (k !== null) {
        match = keyed.get(k) || null;
        if (match && match.nodeName !== n.nodeName) match = null;
        keyed.delete(k);
      } else if (cur && cur.nodeType === n.nodeType && cur.nodeName === n.nodeName &&
        !(cur.nodeType === 1 && cur.hasAttribute("data-key"))) {
        match = cur;
      }
      if (!match) { live.insertBefore(n, cur); continue; }
      if (match === cur) cur = cur.nextSibling;
      else live.insertBefore(match, cur);
      morph(match, n);
    }
    // Whatever is left from cur on was not matched: every match was
    // placed before cur.
    while (cur) { const next = cur.nextSibling; cur.remove(); cur = next; }
  }

  // morph makes live (the same tag as next) look like next.
  function morph(live, next) {
    if (live.nodeType !== 1) {
      if (live.nodeValue !== next.nodeValue) live.nodeValue = next.nodeValue;
      return;
    }
    for (const a of [...live.attributes]) if (!next.hasAttribute(a.name)) live.removeAttribute(a.name);
    for (const a of next.attributes) if (live.getAttribute(a.name) !== a.value) live.setAttribute(a.name, a.value);
    patch(live, [...next.childNodes]);
  }

  // ---- formatting: units and relative times ----

  // Each formatter rounds once, to what it shows, and then picks the
  // unit: 999.7 B shows as "1.0 KB", not "1000 B", and 119.6 s as
  // "2 min 0 s", not "1 min 60 s".
  function bytes(n) {
    if (!isFinite(n)) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    for (let i = 0; ; i++, n /= 1000) {
      let shown;
      if (i === 0) shown = String(Math.round(n));
      else shown = Math.abs(Number(n.toFixed(1))) < 10 ? n.toFixed(1) : String(Math.round(n));
      if (Math.abs(Number(shown)) < 1000 || i === units.length - 1) return shown + " " + units[i];
    }
  }
  const rate = (n) => bytes(n) + "/s";
  function perSec(n) {
    if (!isFinite(n)) return "–";
    const tenths = Math.round(n * 10) / 10;
    return (Math.abs(tenths) >= 10 ? Math.round(n) : tenths) + "/s";
  }
  function duration(s) {
    if (!isFinite(s)) return "–";
    s = Math.max(0, s);
    if (Math.round(s * 1000) < 1000) return Math.round(s * 1000) + " ms";
    if (Math.round(s * 10) < 100) return (Math.round(s * 10) / 10).toFixed(1) + " s";
    const sec = Math.round(s);
    if (sec < 60) return sec + " s";
    if (sec < 3600) return Math.floor(sec / 60) + " min " + (sec % 60) + " s";
    const min = Math.round(s / 60);
    if (min < 1440) return Math.floor(min / 60) + " h " + (min % 60) + " min";
    const hours = Math.round(s / 3600);
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  // serverNow is the server's clock, as its last answer's Date header
  // told it, so that "3 s ago" is measured between two times of the
  // same clock however wrong the browser's is. The header counts whole
  // seconds (truncated): half a second more centres the error. Before
  // any answer: the browser's clock.
  let clockOffset = 0;
  const serverNow = () => Date.now() + clockOffset;
  function noteServerDate(header) {
    const d = Date.parse(header || "");
    if (isFinite(d)) clockOffset = d + 500 - Date.now();
  }

  function ago(when) {
    const s = Math.max(0, (serverNow() - when) / 1000);
    if (s < 1) return "just now";
    if (s < 60) return Math.floor(s) + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  const human = (s) => s.replace(/_/g, " ");

  // ---- the API ----

  class APIError extends Error {
    constructor(status, body) {
      super((body && body.error) || ("HTTP " + status));
      this.status = status;
      this.problems = (body && body.problems) || [];
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  async function api(method, path, body) {
    const headers = {};
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const res = await fetch("api/v1/" + path, init);
    noteServerDate(res.headers.get("Date"));
    const type = res.headers.get("Content-Type") || "";
    let data = null;
    if (res.status !== 204) data = type.startsWith("application/json") ? await res.json() : await res.text();
    if (res.status === 401) {
      showLogin(t ? "That token was refused." : "");
      throw new APIError(401, data);
    }
    if (!res.ok) throw new APIError(res.status, data);
    return data;
  }

  const enc = encodeURIComponent;
  const memberPath = (route, member) => "routes/" + enc(route) + "/members/" + enc(member);

  // ---- toasts and dialogs ----

  function toast(msg, bad) {
    const t = el("div", { class: "toast" + (bad ? " bad" : "") }, msg);
    $("#toasts").append(t);
    setTimeout(() => t.remove(), bad ? 8000 : 4000);
  }

  // ask shows the confirmation dialog and resolves to true (or the input's
  // value when input is given) or null when cancelled.
  function ask({ title, body, ok = "OK", danger = true, input }) {
    const d = $("#ask");
    $("#ask-title").textContent = title;
    $("#ask-body").replaceChildren(...(Array.isArray(body) ? body : [body || ""]).map((b) => b instanceof Node ? b : el("p", {}, b)));
    $("#ask-ok").textContent = ok;
    $("#ask-ok").className = danger ? "danger" : "primary";
    const label = $("#ask-input-label"), field = $("#ask-input");
    label.hidden = !input;
    if (input) {
      $("#ask-input-name").textContent = input.name;
      field.type = input.type || "text";
      field.value = input.value;
      for (const [k, v] of Object.entries(input.attrs || {})) field.setAttribute(k, v);
    }
    return new Promise((resolve) => {
      d.addEventListener("close", () => {
        if (d.returnValue !== "ok") resolve(null);
        else resolve(input ? field.value : true);
      }, { once: true });
      d.returnValue = "";
      d.showModal();
      (input ? field : $("#ask-cancel")).focus();
    });
  }

  // act runs one state change and shows its result.
  async function act(what, fn) {
    try {
      const msg = await fn();
      toast(msg || what + ": done");
      poll();
      return true;
    } catch (e) {
      if (e.status !== 401) toast(what + " failed: " + e.message, true);
      return false;
    }
  }

  // ---- state ----

  const state = {
    routes: [],
    history: null,
    historyAt: 0, // when history was last read (the browser's clock)
    specs: null,
    // sort is the server's order (id, age, bytes); cursor the page's
    // place in it (after, before, offset: see CURSOR), stack the cursors
    // of the pages before.
    sessions: { sort: "id", cursor: "", stack: [], next: null, route: "", client: "", member: "" },
    ends: { reason: "", route: "" },
    seenReasons: new Set(), // close reasons: the routes' stats name every one
    seen: new Map(), // route/member -> its health and weight last seen
    changed: new Map(), // route/member -> when its health or weight changed
    timer: 0,
    busy: false,
    again: false,
    // epoch counts sign-outs: a poll's answer of an older epoch arrives
    // after the sign-out and is dropped, never shown.
    epoch: 0,
    polls: 0,
    renders: 0,
    // pressedAt is when a pointer went down on the page (0: none is);
    // pending the render held until it comes up.
    pressedAt: 0,
    pending: null,
  };

  // ---- login ----

  function showLogin(msg) {
    stop();
    state.epoch++;
    state.again = false;
    clearData();
    $("#app").hidden = true;
    $("#login").hidden = false;
    $("#logout").hidden = true;
    $("#status").textContent = "signed out";
    $("#status").className = "pill warn";
    $("#login-error").textContent = msg || "";
    $("#token").focus();
  }

  // clearData removes from the page everything read from pier, so that
  // none of it stays after sign-out (behind the form, or in a dialog).
  function clearData() {
    state.pending = null;
    state.routes = [];
    state.history = null;
    state.historyAt = 0;
    state.specs = null;
    state.seen.clear();
    state.changed.clear();
    state.seenReasons.clear();
    for (const d of document.querySelectorAll("dialog[open]")) d.close();
    for (const sel of ["#route-list", "#sessions-table tbody", "#ends-table tbody", "#ends-summary", "#toasts",
      "#file-preview", "#preview", "#reload-result", "#filter-fields", "#filter-name"]) $(sel).replaceChildren();
    for (const sel of ["#sessions-count", "#sessions-page", "#updated", "#routes-error", "#sessions-error", "#ends-error"]) $(sel).textContent = "";
    for (const sel of ["#sessions-route", "#ends-route", "#ends-reason"]) fillSelect($(sel), []);
    $("#config-text").value = "";
  }

  async function signIn(ev) {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    $("#login-error").textContent = "";
    start();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  }

  // ---- polling ----

  function start() {
    $("#login").hidden = true;
    stop();
    poll();
  }
  function stop() {
    clearTimeout(state.timer);
    state.timer = 0;
  }

  // poll reads everything the page shows, renders it, and schedules the
  // next poll a second after this one ends (never two at once). Each
  // section stands alone: one endpoint's failure (ends answers 503 when a
  // relay loop is slow) shows in its section, and the others stay live.
  async function poll() {
    clearTimeout(state.timer);
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    const epoch = state.epoch;
    // The history moves by a sample a second and is five minutes long:
    // read whole every HISTORY_MS, not every poll.
    const wantHistory = !state.history || Date.now() - state.historyAt >= HISTORY_MS;
    const got = await Promise.allSettled([
      api("GET", "routes"),
      wantHistory ? api("GET", "history") : null,
      api("GET", sessionsQuery()),
      api("GET", endsQuery()),
      readiness(),
    ]);
    if (epoch === state.epoch && !got.some((g) => g.status === "rejected" && g.reason.status === 401) && !state.specs) {
      try {
        state.specs = (await api("GET", "filter_specs")).filters;
      } catch (e) { /* the form asks again on the next poll */ }
    }
    state.busy = false;
    // Signed out meanwhile, or refused (the login form shows): drop it.
    if (epoch !== state.epoch || got.some((g) => g.status === "rejected" && g.reason.status === 401)) {
      if (state.again && epoch === state.epoch) { state.again = false; poll(); }
      return;
    }
    state.polls++;
    document.body.dataset.polls = state.polls;
    if (wantHistory && got[1].status === "fulfilled") state.historyAt = Date.now();
    renderWhenFree(() => render(got));
    if (state.again) { state.again = false; return poll(); }
    state.timer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }

  // renderWhenFree renders now, or, while a pointer is down on the page,
  // when it comes up: a click is a press and a release on the same
  // element, and a render between the two could move it. HOLD_MAX_MS
  // bounds the wait (a release the page never saw).
  function renderWhenFree(fn) {
    const epoch = state.epoch;
    state.pending = () => { if (epoch === state.epoch) fn(); };
    if (state.pressedAt && Date.now() - state.pressedAt < HOLD_MAX_MS) return;
    flush();
  }
  function flush() {
    const fn = state.pending;
    state.pending = null;
    if (fn) fn();
  }

  // sectionError says why a section's data is stale, or nothing.
  function sectionError(sel, what, r) {
    let msg = "";
    if (r && r.status === "rejected") {
      const e = r.reason;
      msg = what + ": " + (e.status === 503 ? "a relay loop did not answer" : e.message) + "; retrying";
    }
    $(sel).textContent = msg;
  }

  function render([routes, history, sessions, ends, ready]) {
    $("#app").hidden = false;
    $("#login").hidden = true;
    $("#logout").hidden = !token();
    const answered = [routes, sessions, ends].filter((r) => r.status === "fulfilled").length;
    if (answered === 0) {
      $("#status").textContent = "unreachable: " + routes.reason.message;
      $("#status").className = "pill bad";
    } else {
      renderStatus(ready.value);
    }
    if (history.status === "fulfilled" && history.value) state.history = history.value;
    if (routes.status === "fulfilled") {
      state.routes = routes.value.routes;
      renderRoutes();
    }
    sectionError("#routes-error", "routes", routes.status === "rejected" ? routes : history);
    if (sessions.status === "fulfilled") renderSessions(sessions.value);
    sectionError("#sessions-error", "sessions", sessions);
    if (ends.status === "fulfilled") renderEnds(ends.value.ends);
    sectionError("#ends-error", "ends", ends);
    state.renders++;
    document.body.dataset.renders = state.renders;
  }

  async function readiness() {
    try {
      await api("GET", "../../readyz");
      return { ready: true };
    } catch (e) {
      if (e.status === 401) throw e;
      return { ready: false, why: e.message };
    }
  }

  function renderStatus(r) {
    const s = $("#status");
    s.textContent = r.ready ? "ready" : "not ready";
    s.className = "pill " + (r.ready ? "ok" : "warn");
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  // ---- routes and members ----

  // spark draws one series as an SVG sparkline (attributes only: no
  // inline style).
  function spark(values, cls, label) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    const w = 300, h = 30;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark " + (cls || ""));
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    const n = values.length;
    if (n < 2) return svg;
    const max = Math.max(...values, 1e-9);
    const pts = values.map((v, i) => `${((i / (n - 1)) * w).toFixed(1)},${(h - 1 - (v / max) * (h - 3)).toFixed(1)}`);
    const area = document.createElementNS(NS, "polygon");
    area.setAttribute("points", `0,${h} ${pts.join(" ")} ${w},${h}`);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(area, line);
    return svg;
  }

  function health(m) {
    if (m.disabled) return ["disabled", "bad"];
    if (m.draining) return ["draining", "warn"];
    if (m.ejected) return ["ejected", "bad"];
    if (!m.up) return ["down", "bad"];
    return ["up", "ok"];
  }

  const last = (a) => (a && a.length ? a[a.length - 1] : 0);

  function renderRoutes() {
    const hist = new Map(((state.history && state.history.routes) || []).map((r) => [r.name, r]));
    const now = Date.now();
    const cards = state.routes.map((r) => {
      const h = hist.get(r.name) || { sessions_per_second: [], bytes_to_upstream_per_second: [], bytes_to_client_per_second: [], live: [] };
      const st = r.stats || { refused: {}, ended: {} };
      const refused = Object.values(st.refused || {}).reduce((a, b) => a + b, 0);
      // A dial that failed, refused or timed out: both end a session
      // before it reached a member.
      const ended = st.ended || {};
      const failed = (ended.connect_failed || 0) + (ended.connect_timeout || 0);
      const minutes = Math.max(1, Math.round(h.live.length / 60));
      const stat = (label, value, series, cls) => el("div", { class: "stat" },
        el("div", { class: "label" }, label), el("div", { class: "value" }, value),
        series ? spark(series.slice(-300), cls, label + ", last " + minutes + " min") : null);
      const counts = el("div", { class: "counts" },
        el("span", { class: "pill " + (refused ? "warn" : "") , title: "clients refused: limit, no_upstream, local_error" },
          "refused " + refused + (refused ? " (" + Object.entries(st.refused).filter(([, v]) => v).map(([k, v]) => human(k) + " " + v).join(", ") + ")" : "")),
        el("span", { class: "pill dial-failed " + (failed ? "bad" : ""), title: "sessions ended by connect_failed or connect_timeout" },
          "dial failed " + failed + (ended.connect_timeout ? " (" + ended.connect_timeout + " timed out)" : "")),
        el("span", { class: "pill" }, "started " + (st.started || 0)),
        el("span", { class: "pill" }, "total ↑ " + bytes(st.to_upstream || 0) + " ↓ " + bytes(st.to_client || 0)));
      const filters = el("div", { class: "filters", "data-route": r.name },
        el("span", { class: "muted" }, "Filters:"),
        r.filters.length ? null : el("span", { class: "muted" }, "none"),
        r.filters.map((f, i) => el("span", { class: "chip" + (f.overlay ? " overlay" : ""), "data-filter": f.name, "data-key": i + "/" + f.name, title: f.overlay ? "set at run time" : "from the file" },
          f.name + optionsText(f.options),
          el("button", { type: "button", class: "remove-filter", "aria-label": "remove " + f.name, "data-route": r.name, "data-index": i, "data-name": f.name }, "×"))),
        el("button", { type: "button", class: "small add-filter", "data-route": r.name }, "+ Add filter"));
      // The last check's column only when a check failed: it is empty else.
      const checked = r.members.some((m) => m.last_check_error);
      const rows = r.members.map((m) => {
        const key = r.name + "/" + m.name + "/" + m.addr;
        const [hl, hc] = health(m);
        const seen = hl + " " + m.weight;
        const prev = state.seen.get(key);
        if (prev !== undefined && prev !== seen) state.changed.set(key, now);
        state.seen.set(key, seen);
        const flash = now - (state.changed.get(key) || 0) < FLASH_MS;
        const data = { "data-route": r.name, "data-member": m.name };
        return el("tr", { class: flash ? "flash" : null, "data-key": m.name + " " + m.addr, "data-member": m.name, "data-addr": m.addr },
          el("td", {}, m.name, m.name !== m.addr ? el("div", { class: "muted" }, m.addr) : null, m.backup ? el("span", { class: "pill" }, "backup") : null),
          el("td", {}, el("span", { class: "pill health " + hc }, hl)),
          checked ? el("td", { class: "reason" }, m.last_check_error || "") : null,
          el("td", { class: "num" }, m.weight, m.weight !== m.file_weight ? el("span", { class: "muted" }, " (file " + m.file_weight + ")") : null),
          el("td", { class: "num" }, m.live),
          el("td", { class: "num" }, m.connect_failures),
          el("td", {}, el("span", { class: "actions" },
            el("button", { type: "button", class: "small member-act", ...data, "data-act": m.draining ? "undrain" : "drain" }, m.draining ? "Undrain" : "Drain"),
            el("button", { type: "button", class: "small member-act", ...data, "data-act": m.disabled ? "enable" : "disable" }, m.disabled ? "Enable" : "Disable"),
            el("button", { type: "button", class: "small member-act", ...data, "data-act": "weight", "data-weight": m.weight }, "Weight…"))));
      });
      return el("article", { class: "card route", "data-key": r.name, "data-route": r.name },
        el("div", { class: "route-head" }, el("h3", {}, r.name),
          el("span", { class: "muted" }, (r.addrs.length ? r.addrs : r.listen).join(", ")),
          r.max_connections ? el("span", { class: "muted" }, "max " + r.max_connections) : null,
          r.overlay ? el("span", { class: "pill" }, "runtime changes") : null),
        el("div", { class: "stats" },
          stat("Live sessions", String(r.live), h.live),
          stat("Sessions/s", perSec(last(h.sessions_per_second)), h.sessions_per_second),
          stat("↑ to upstream", rate(last(h.bytes_to_upstream_per_second)), h.bytes_to_upstream_per_second),
          stat("↓ to client", rate(last(h.bytes_to_client_per_second)), h.bytes_to_client_per_second, "down")),
        counts, filters,
        el("div", { class: "table-wrap" }, el("table", { class: "members" },
          el("thead", {}, el("tr", {}, ["Member", "Health", checked ? "Last check" : null, "Weight", "Live", "Dial failures", ""]
            .filter((t) => t !== null).map((t) => el("th", { class: ["Weight", "Live", "Dial failures"].includes(t) ? "num" : "" }, t)))),
          el("tbody", {}, rows))));
    });
    patch($("#route-list"), cards);
    const names = state.routes.map((r) => r.name);
    fillSelect($("#sessions-route"), names);
    fillSelect($("#ends-route"), names);
  }

  function optionsText(opts) {
    const e = Object.entries(opts || {});
    if (!e.length) return "";
    return " (" + e.map(([k, v]) => k + "=" + (Array.isArray(v) ? v.join(",") : typeof v === "object" ? JSON.stringify(v) : v)).join(", ") + ")";
  }

  // fillSelect keeps a select's "all" option and choice, and lists values.
  function fillSelect(sel, values) {
    const have = [...sel.options].slice(1).map((o) => o.value);
    if (have.join("\n") === values.join("\n")) return;
    const v = sel.value;
    sel.replaceChildren(sel.options[0], ...values.map((n) => el("option", { value: n }, n)));
    sel.value = values.includes(v) ? v : "";
  }

  async function memberAction(b) {
    const route = b.dataset.route, member = b.dataset.member, a = b.dataset.act;
    if (a === "weight") {
      const w = await ask({ title: "Weight of " + member, body: "Its share of new sessions on " + route + ", 1..1000 (to stop new sessions, drain).",
        ok: "Set weight", danger: false, input: { name: "Weight", type: "number", value: b.dataset.weight, attrs: { min: 1, max: 1000 } } });
      if (w === null) return;
      return act("Weight", async () => {
        const m = await api("PUT", memberPath(route, member) + "/weight", { weight: Number(w) });
        return member + ": weight " + m.weight;
      });
    }
    const breaks = a === "drain" || a === "disable";
    if (breaks) {
      const what = a === "drain"
        ? "It keeps its live sessions but gets no new one."
        : "It gets no new session and its health checks stop; its live sessions continue.";
      if (!(await ask({ title: (a === "drain" ? "Drain " : "Disable ") + member + "?", body: [what, "Route: " + route], ok: a === "drain" ? "Drain" : "Disable" }))) return;
    }
    return act(a, async () => {
      const m = await api("POST", memberPath(route, member) + "/" + a);
      return member + " is now " + health(m)[0] + (a === "undrain" || a === "enable" ? " (" + a + "d)" : "");
    });
  }

  async function removeFilter(b) {
    const route = b.dataset.route, i = b.dataset.index, name = b.dataset.name;
    if (!(await ask({ title: "Remove " + name + " from " + route + "?", body: "The route's live sessions stop running it at once.", ok: "Remove" }))) return;
    return act("Remove filter", async () => {
      const res = await api("DELETE", "routes/" + enc(route) + "/filters/" + enc(i));
      return "Filters of " + route + ": " + (res.filters.map((f) => f.name).join(", ") || "none");
    });
  }

  // ---- the filter form, built from /api/v1/filter_specs ----

  let formRoute = "";

  function openFilterForm(route) {
    formRoute = route;
    $("#filter-route").textContent = route;
    const sel = $("#filter-name");
    if (!sel.options.length) {
      sel.replaceChildren(...(state.specs || []).map((s) => el("option", { value: s.name }, s.name)));
      const lat = (state.specs || []).find((s) => s.name === "latency");
      if (lat) sel.value = lat.name;
    }
    buildFields();
    $("#filter-dialog").showModal();
  }

  function buildFields() {
    const spec = (state.specs || []).find((s) => s.name === $("#filter-name").value);
    $("#filter-error").textContent = "";
    $("#filter-help").textContent = spec ? spec.help : "";
    const fields = (spec ? spec.options : []).map((o) => {
      const id = "opt-" + o.name;
      let input;
      const common = { id, name: o.name, "data-kind": o.kind, "aria-describedby": id + "-help " + id + "-err" };
      if (o.kind === "enum" || o.kind === "direction" || o.kind === "bool") {
        const choices = o.kind === "bool" ? ["true", "false"] : o.choices;
        input = el("select", common, el("option", { value: "" }, o.default ? "default (" + o.default + ")" : "—"),
          choices.map((c) => el("option", { value: c }, c)));
      } else if (o.kind === "list") {
        input = el("textarea", { ...common, rows: 2, placeholder: o.default || "one value a line" });
      } else {
        input = el("input", { ...common, type: "text", placeholder: o.default || (o.kind === "duration" ? "e.g. 200ms" : o.kind === "size" ? "e.g. 64KiB" : ""),
          inputmode: o.kind === "number" ? "decimal" : null, required: o.required });
      }
      return el("div", { class: "field", "data-option": o.name },
        el("label", { for: id }, o.name, o.required ? " *" : "", " ", el("span", { class: "kind" }, o.kind)),
        input,
        el("p", { class: "help", id: id + "-help" }, o.help),
        el("p", { class: "error field-error", id: id + "-err", role: "alert" }));
    });
    if (spec && !spec.options_declared) fields.push(freeOptions());
    else if (spec && spec.options.length === 0) fields.push(el("p", { class: "muted" }, "This filter takes no options."));
    $("#filter-fields").replaceChildren(...fields);
  }

  // freeOptions is the field of a filter that declares no options (a
  // user's own): option=value, one a line, sent as strings, which the
  // filter reads as it reads a config file's.
  function freeOptions() {
    const id = "opt-free";
    return el("div", { class: "field", "data-option": "" },
      el("label", { for: id }, "Options ", el("span", { class: "kind" }, "option=value, one a line")),
      el("textarea", { id, class: "free-options", rows: 4, "data-free": "", placeholder: "option=value", "aria-describedby": id + "-help " + id + "-err" }),
      el("p", { class: "help", id: id + "-help" }, "This filter does not declare its options, so the form cannot list them: see its documentation."),
      el("p", { class: "error field-error", id: id + "-err", role: "alert" }));
  }

  // freeOptionsValue reads the free options field: an object, or an
  // error naming the line that is not option=value.
  function freeOptionsValue(text) {
    const opts = {};
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (line === "") continue;
      const eq = line.indexOf("=");
      const key = eq < 0 ? "" : line.slice(0, eq).trim();
      if (key === "") throw new FormError("line " + (i + 1) + ": want option=value, got " + JSON.stringify(line));
      if (key in opts) throw new FormError("line " + (i + 1) + ": " + key + " given twice");
      opts[key] = line.slice(eq + 1).trim();
    }
    return opts;
  }

  class FormError extends Error {}

  // filterBody is the form as the API's filter list of one: only the
  // fields filled in (the rest take their defaults).
  function filterBody() {
    const name = $("#filter-name").value;
    const free = $("#filter-fields [data-free]");
    const opts = free ? freeOptionsValue(free.value) : {};
    for (const f of $("#filter-fields").querySelectorAll("[data-kind]")) {
      const v = f.value.trim();
      if (v === "") continue;
      opts[f.name] = f.dataset.kind === "list" ? v.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean) : v;
    }
    return [{ [name]: opts }];
  }

  function clearFieldErrors() {
    for (const f of $("#filter-fields").querySelectorAll(".field-error")) f.textContent = "";
    for (const f of $("#filter-fields").querySelectorAll("[data-kind], [data-free]")) f.removeAttribute("aria-invalid");
    $("#filter-error").textContent = "";
  }

  // markField shows msg under the field with that id, after any other.
  function markField(id, msg) {
    const err = document.getElementById(id + "-err");
    err.textContent = (err.textContent ? err.textContent + "; " : "") + msg;
    document.getElementById(id).setAttribute("aria-invalid", "true");
  }

  function showFieldErrors(e) {
    clearFieldErrors();
    const general = [];
    const free = $("#filter-fields [data-free]");
    for (const p of e.problems) {
      // filters[0].delay: the option's field (or the free options', with
      // the option's name); anything else: the form's.
      const m = /^filters\[\d+\]\.(.+)$/.exec(p.field || "");
      if (m && document.getElementById("opt-" + m[1] + "-err")) markField("opt-" + m[1], p.message);
      else if (m && free) markField("opt-free", m[1] + ": " + p.message);
      else general.push(p.message);
    }
    if (!e.problems.length) general.push(e.message);
    $("#filter-error").textContent = general.join("; ");
  }

  async function submitFilter(ev) {
    ev.preventDefault();
    let body;
    try {
      body = filterBody();
    } catch (e) {
      if (!(e instanceof FormError)) throw e;
      clearFieldErrors();
      markField("opt-free", e.message);
      return;
    }
    const name = $("#filter-name").value;
    const route = state.routes.find((r) => r.name === formRoute);
    const live = route ? route.live : 0;
    if (!(await ask({ title: "Add " + name + " to " + formRoute + "?", body: [
      el("code", {}, JSON.stringify(body)),
      "The route's " + live + " live session" + (live === 1 ? "" : "s") + " take it up at once, and every new one.",
    ], ok: "Add filter" }))) return;
    try {
      const res = await api("POST", "routes/" + enc(formRoute) + "/filters", body);
      $("#filter-dialog").close();
      toast("Filters of " + formRoute + ": " + res.filters.map((f) => f.name + optionsText(f.options)).join(", "));
      poll();
    } catch (e) {
      if (e.status !== 401) showFieldErrors(e);
    }
  }

  // ---- sessions ----

  // The server sorts and pages the live sessions: by id (oldest first,
  // paged after an id), by age (newest first, before an id) or by bytes
  // (most first, both ways summed, by offset). A page is never sorted
  // here: with thousands of sessions, only the server sees them all.
  const CURSOR = { id: "after", age: "before", bytes: "offset" };
  const SORTED = { id: "oldest first", age: "newest first", bytes: "most bytes first (both ways)" };

  function sessionsQuery() {
    const s = state.sessions;
    const q = new URLSearchParams({ sort: s.sort, limit: PAGE });
    if (s.route) q.set("route", s.route);
    if (s.client) q.set("client", s.client);
    if (s.member) q.set("member", s.member);
    if (s.cursor) q.set(CURSOR[s.sort], s.cursor);
    return "sessions?" + q;
  }

  // sortBy asks the server for another order, from its first page.
  function sortBy(sort) {
    const s = state.sessions;
    // Age again: oldest first, which is the id order.
    const next = sort === "age" && s.sort === "age" ? "id" : sort;
    if (next === s.sort) return;
    s.sort = next; s.cursor = ""; s.stack = []; s.next = null;
    poll();
  }

  const stateLabel = {
    connecting: ["connecting", "warn"], open: ["open", "ok"],
    half_closed_client: ["half-closed: client done", "warn"], half_closed_upstream: ["half-closed: upstream done", "warn"],
  };

  function renderSessions(page) {
    const s = state.sessions;
    // A page asked for before the sort changed: its next is another
    // sort's cursor. The poll the change started brings the right one.
    if (page.sort !== s.sort) return;
    s.next = page.next;
    const rows = page.sessions;
    $("#sessions-table").dataset.sort = page.sort;
    const trs = rows.map((x) => {
      const [label, cls] = stateLabel[x.state] || [x.state, ""];
      return el("tr", { "data-key": x.id, "data-id": x.id, "data-client": x.client, "data-member": x.upstream },
        el("td", {}, x.id), el("td", {}, x.route), el("td", {}, x.client),
        el("td", { class: "wide" }, x.upstream || el("span", { class: "muted" }, "—")),
        el("td", {}, el("span", { class: "pill " + cls }, label)),
        el("td", { class: "age" }, duration(x.age_seconds)),
        el("td", { class: "num up", "data-bytes": x.bytes_to_upstream }, bytes(x.bytes_to_upstream)),
        el("td", { class: "num down", "data-bytes": x.bytes_to_client }, bytes(x.bytes_to_client)),
        el("td", {}, el("span", { class: "actions" },
          el("button", { type: "button", class: "small end-session", "data-id": x.id, "data-mode": "close" }, "Close"),
          el("button", { type: "button", class: "small end-session", "data-id": x.id, "data-mode": "reset" }, "Reset"))));
    });
    if (!rows.length) {
      trs.push(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No live session" + (s.route || s.client || s.member ? " matches." : "."))));
    }
    patch($("#sessions-table tbody"), trs);
    const pageNo = s.stack.length + 1;
    $("#sessions-count").textContent = "(" + page.matched + (page.partial ? "+, a relay loop did not answer" : "") + ")";
    $("#sessions-page").textContent = "page " + pageNo + " · " + SORTED[s.sort] +
      (s.sort === "bytes" ? " (bytes move: pages may overlap)" : "");
    $("#sessions-prev").disabled = s.stack.length === 0;
    $("#sessions-next").disabled = !page.next;
    // The arrows say the order in force: ▲ ascending, ▼ descending.
    const arrows = { id: { id: "asc", age: "desc" }, age: { age: "asc" }, bytes: { bytes: "desc" } }[s.sort];
    for (const b of document.querySelectorAll("th button.sort")) {
      const a = arrows[b.dataset.sort];
      b.classList.toggle("asc", a === "asc");
      b.classList.toggle("desc", a === "desc");
      b.closest("th").setAttribute("aria-sort", a === "asc" ? "ascending" : a === "desc" ? "descending" : "none");
    }
  }

  async function endSession(b) {
    const id = b.dataset.id, mode = b.dataset.mode;
    const row = b.closest("tr");
    const who = row ? row.children[2].textContent + " → " + row.children[3].textContent : "";
    if (!(await ask({ title: (mode === "reset" ? "Reset" : "Close") + " session " + id + "?", body: [who,
      mode === "reset" ? "Both sides get a reset." : "Both sides get a FIN, then the connections close."], ok: mode === "reset" ? "Reset" : "Close" }))) return;
    return act("End session", async () => {
      await api("DELETE", "sessions/" + enc(id) + "?mode=" + mode);
      return "Session " + id + " ended (" + mode + ")";
    });
  }

  // ---- ends ----

  function endsQuery() {
    const q = new URLSearchParams({ limit: 200 });
    if (state.ends.reason) q.set("reason", state.ends.reason);
    if (state.ends.route) q.set("route", state.ends.route);
    return "ends?" + q;
  }

  function reasonClass(r) {
    if (r === "done") return "ok";
    if (/^(connect_|no_upstream|local_error|filter_error)|_reset$/.test(r)) return "bad";
    return "warn";
  }

  function renderEnds(ends) {
    const counts = new Map();
    for (const e of ends) counts.set(e.reason, (counts.get(e.reason) || 0) + 1);
    for (const r of counts.keys()) state.seenReasons.add(r);
    for (const rt of state.routes) for (const r of Object.keys((rt.stats && rt.stats.ended) || {})) state.seenReasons.add(r);
    fillSelect($("#ends-reason"), [...state.seenReasons].sort());
    const chips = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([r, n]) =>
      el("button", { type: "button", class: "small reason-chip" + (state.ends.reason === r ? " active" : ""), "data-key": r, "data-reason": r },
        el("span", { class: "pill " + reasonClass(r) }, r), " " + n));
    if (state.ends.reason) chips.push(el("button", { type: "button", class: "small reason-chip", "data-key": "", "data-reason": "" }, "show all"));
    patch($("#ends-summary"), [el("span", { class: "muted" }, "last " + ends.length + ":"), ...chips]);
    const trs = ends.map((e) => el("tr", { "data-key": e.id + " " + e.time },
      el("td", { title: e.time }, ago(Date.parse(e.time))), el("td", {}, e.id), el("td", {}, e.route), el("td", {}, e.client),
      el("td", { class: "wide" }, e.upstream), el("td", {}, el("span", { class: "pill " + reasonClass(e.reason) }, e.reason)),
      el("td", { class: "num" }, duration(e.duration_seconds)), el("td", { class: "num" }, bytes(e.bytes_to_upstream)),
      el("td", { class: "num" }, bytes(e.bytes_to_client)), el("td", { class: "err wide" }, e.error)));
    if (!ends.length) trs.push(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No session has ended yet.")));
    patch($("#ends-table tbody"), trs);
  }

  // ---- reload with its preview ----

  // openReload shows what a reload would change, read from the file by
  // pier (GET reload/preview), and fills the editor with the config in
  // force for a preview of an edited text.
  async function openReload() {
    $("#file-preview").replaceChildren(el("p", { class: "muted" }, "Reading the file…"));
    $("#preview").replaceChildren();
    $("#reload-result").replaceChildren();
    $("#reload-btn").disabled = true;
    $("#reload-dialog").showModal();
    await Promise.all([previewFile(), (async () => {
      try {
        $("#config-text").value = await api("GET", "config?format=yaml");
      } catch (e) {
        $("#config-text").value = "";
        if (e.status !== 401) $("#preview").replaceChildren(el("p", { class: "error" }, "Reading the config in force: " + e.message));
      }
    })()]);
  }

  // previewFile shows the file's preview; a reload is offered when the
  // file loads.
  async function previewFile() {
    $("#reload-btn").disabled = true;
    try {
      const p = await api("GET", "reload/preview");
      $("#file-preview").replaceChildren(renderPreview(p, "The file's mistakes: a reload would keep the config in force"));
      $("#reload-btn").disabled = !p.ok;
    } catch (e) {
      if (e.status !== 401) $("#file-preview").replaceChildren(el("p", { class: "error" }, "Reading the file's preview: " + e.message));
    }
  }

  async function preview() {
    try {
      const p = await api("POST", "config/check", $("#config-text").value);
      $("#preview").replaceChildren(renderPreview(p, "Mistakes"));
    } catch (e) {
      if (e.status !== 401) $("#preview").replaceChildren(el("p", { class: "error" }, e.message));
    }
  }

  function renderPreview(p, mistakes) {
    if (!p.ok) {
      return el("div", { class: "preview-problems" }, el("h3", {}, mistakes),
        el("ul", { class: "plain" }, p.problems.map((x) => el("li", { class: "error" },
          (x.line ? "line " + x.line + ":" + x.col + ": " : "") + (x.field ? x.field + ": " : "") + x.message))));
    }
    if (!p.changes.length) return el("p", { class: "preview-none" }, "No change: it is the config in force.");
    return el("div", { class: "table-wrap" }, el("table", { class: "preview-changes" },
      el("thead", {}, el("tr", {}, ["Kind", "Action", "Route", "Name", "Fields", "Live", "Effect"].map((t) => el("th", {}, t)))),
      el("tbody", {}, p.changes.map((c) => el("tr", {},
        el("td", {}, c.kind), el("td", {}, c.action), el("td", {}, c.route), el("td", {}, c.name),
        el("td", {}, c.fields.join(", ")), el("td", { class: "num" }, c.live_sessions), el("td", { class: "reason" }, c.effect))))));
  }

  async function reload() {
    if (!(await ask({ title: "Reload the config file?", body: ["pier reads its file again and applies it: the changes listed, if the file has not changed since.",
      "Runtime changes whose route and member remain are kept."], ok: "Reload" }))) return;
    try {
      const r = await api("POST", "reload");
      showReload(r);
      toast("Reloaded: the new config is in force");
      poll();
      previewFile(); // now: no change, or what changed in the file since
    } catch (e) {
      if (e.status === 401) return;
      showReload(null, e);
      toast("Reload failed: " + e.message, true);
    }
  }

  function showReload(r, err) {
    const out = [];
    if (r) {
      out.push(el("p", { class: "pill ok" }, "reloaded"));
      if (r.overlay.kept.length) out.push(el("p", {}, "Runtime changes kept: " + r.overlay.kept.join(", ")));
      if (r.overlay.dropped.length) out.push(el("p", {}, "Runtime changes dropped: " + r.overlay.dropped.join(", ")));
    } else {
      out.push(el("p", { class: "pill bad" }, "not reloaded: pier keeps the config it had"));
      out.push(el("p", { class: "error" }, err.message));
    }
    $("#reload-result").replaceChildren(...out);
  }

  // ---- wiring: one listener per container, so re-rendering keeps them ----

  document.addEventListener("DOMContentLoaded", () => {
    $("#login-form").addEventListener("submit", signIn);
    $("#logout").addEventListener("click", signOut);
    $("#route-list").addEventListener("click", (ev) => {
      const b = ev.target.closest("button");
      if (!b) return;
      if (b.classList.contains("member-act")) memberAction(b);
      else if (b.classList.contains("add-filter")) openFilterForm(b.dataset.route);
      else if (b.classList.contains("remove-filter")) removeFilter(b);
    });
    $("#sessions-table").addEventListener("click", (ev) => {
      const b = ev.target.closest("button");
      if (!b) return;
      if (b.classList.contains("end-session")) endSession(b);
      else if (b.classList.contains("sort")) sortBy(b.dataset.sort);
    });
    $("#sessions-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const s = state.sessions;
      s.route = $("#sessions-route").value;
      s.client = $("#sessions-client").value.trim();
      s.member = $("#sessions-member").value.trim();
      s.cursor = ""; s.stack = [];
      $("#sessions-filter-error").textContent = "";
      api("GET", sessionsQuery()).then(() => poll(), (e) => { if (e.status !== 401) $("#sessions-filter-error").textContent = e.message; });
    });
    $("#sessions-route").addEventListener("change", () => $("#sessions-filter").requestSubmit());
    $("#sessions-next").addEventListener("click", () => {
      const s = state.sessions;
      if (!s.next) return;
      s.stack.push(s.cursor); s.cursor = s.next; poll();
    });
    $("#sessions-prev").addEventListener("click", () => {
      const s = state.sessions;
      if (!s.stack.length) return;
      s.cursor = s.stack.pop(); poll();
    });
    $("#ends-reason").addEventListener("change", () => { state.ends.reason = $("#ends-reason").value; poll(); });
    $("#ends-route").addEventListener("change", () => { state.ends.route = $("#ends-route").value; poll(); });
    $("#ends-summary").addEventListener("click", (ev) => {
      const b = ev.target.closest("button.reason-chip");
      if (!b) return;
      state.ends.reason = b.dataset.reason;
      $("#ends-reason").value = b.dataset.reason;
      poll();
    });
    $("#filter-name").addEventListener("change", buildFields);
    $("#filter-form").addEventListener("submit", submitFilter);
    $("#filter-cancel").addEventListener("click", () => $("#filter-dialog").close());
    $("#reload-open").addEventListener("click", openReload);
    $("#preview-btn").addEventListener("click", preview);
    $("#file-preview-btn").addEventListener("click", previewFile);
    $("#reload-btn").addEventListener("click", reload);
    $("#reload-close").addEventListener("click", () => $("#reload-dialog").close());
    document.addEventListener("visibilitychange", () => { if (!document.hidden && state.timer) poll(); });
    // A press holds the renders (renderWhenFree); its release lets the
    // held one through on the next task, after the click it makes.
    document.addEventListener("pointerdown", () => { state.pressedAt = Date.now(); }, true);
    const released = () => { state.pressedAt = 0; setTimeout(() => { if (!state.pressedAt) flush(); }, 0); };
    document.addEventListener("pointerup", released, true);
    document.addEventListener("pointercancel", released, true);
    // The browser tests' hook: set by the test before the page loads, it
    // gets the formatters to check. A page nobody tests has no hook.
    if (window.pierTest && typeof window.pierTest === "object") {
      window.pierTest.format = { bytes, rate, perSec, duration, ago, serverNow };
    }
    start();
  });
})();
