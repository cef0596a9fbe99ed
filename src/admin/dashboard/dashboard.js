// The admin dashboard's script: plain browser JavaScript, served as a file of
// its own (/dashboard.js) so the page runs under a Content-Security-Policy
// without 'unsafe-inline'. It polls the admin API every 2 s and builds the
// page with DOM calls (textContent only: names from the config are never
// parsed as HTML).
"use strict";
(() => {
  const REFRESH_MS = 2000;
  /** Samples kept per rule for its chart: five minutes at one per refresh. */
  const HISTORY = 150;
  const TOKEN_KEY = "oi-admin-token";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let timer;

  const $ = (id) => document.getElementById(id);

  function element(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    const text = await response.text();
    let json;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = { error: text };
    }
    if (response.status === 401 || response.status === 403) {
      $("token-form").hidden = false;
      throw new Error(response.status === 401 ? "the admin API needs a token" : "the token was refused");
    }
    if (!response.ok) throw new Error(json.error || `${method} ${path}: HTTP ${response.status}`);
    return json;
  }

  function bytes(value) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
  }

  /** The server's samples (GET /api/v1/history), oldest first, the last HISTORY of them. */
  let samples = [];

  async function updateHistory() {
    const since = samples.length === 0 ? 0 : samples[samples.length - 1].time;
    const answer = await api("GET", `/api/v1/history?since=${since}`);
    samples = samples.concat(answer.samples).slice(-HISTORY);
  }

  /** A rule's bytes per second between consecutive samples (a counter that went down starts over). */
  function rates(name) {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const before = samples[i - 1].rules[name];
      const after = samples[i].rules[name];
      if (before === undefined || after === undefined) continue;
      const seconds = (samples[i].time - samples[i - 1].time) / 1000;
      if (seconds <= 0) continue;
      out.push({
        rateIn: after[0] >= before[0] ? (after[0] - before[0]) / seconds : 0,
        rateOut: after[1] >= before[1] ? (after[1] - before[1]) / seconds : 0,
      });
    }
    return out;
  }

  function draw(canvas, series) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 80;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    if (!context) return;
    context.scale(ratio, ratio);
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    let top = 1;
    for (const sample of series) top = Math.max(top, sample.rateIn, sample.rateOut);
    const x = (i) => width - (series.length - 1 - i) * (width / (HISTORY - 1));
    const y = (value) => height - 2 - (value / top) * (height - 14);
    for (const [key, color] of [["rateIn", "--in"], ["rateOut", "--out"]]) {
      context.strokeStyle = style.getPropertyValue(color).trim() || "#888";
      context.lineWidth = 1.5;
      context.beginPath();
      series.forEach((sample, i) => (i === 0 ? context.moveTo(x(i), y(sample[key])) : context.lineTo(x(i), y(sample[key]))));
      context.stroke();
    }
    context.fillStyle = style.getPropertyValue("color") || "#888";
    context.font = "11px system-ui, sans-serif";
    context.fillText(`${bytes(top)}/s`, 2, 10);
  }

  async function setBackend(rule, backend, state) {
    try {
      await api("POST", `/api/v1/rules/${encodeURIComponent(rule)}/backends/${encodeURIComponent(backend)}`, { state });
      showProblem(undefined);
    } catch (error) {
      showProblem(String(error.message || error));
    }
    void refresh();
  }

  function backendRow(ruleName, backend, detail) {
    const state = (detail && detail.state) || "ready";
    const healthy = backend.healthy !== false && !(detail && detail.health === "down");
    const buttons = element("td", {});
    for (const next of ["drain", "maint", "ready"]) {
      if (next === state) continue;
      buttons.append(element("button", { type: "button", "data-state": next, onclick: () => void setBackend(ruleName, backend.name, next) }, next), " ");
    }
    return element(
      "tr",
      { "data-backend": backend.name },
      element("td", { class: "mono" }, backend.name),
      element("td", { class: "mono" }, (detail && detail.address) || ""),
      element("td", {}, detail && detail.weight !== undefined ? detail.weight : ""),
      element("td", { class: `state state-${state}`, "data-role": "state" }, state),
      element("td", { class: healthy ? "" : "unhealthy" }, healthy ? "healthy" : "unhealthy"),
      element("td", {}, backend.connections_active),
      element("td", {}, backend.connections_total),
      buttons,
    );
  }

  function ruleCard(rule, detail, series) {
    const latest = series[series.length - 1] || { rateIn: 0, rateOut: 0 };
    const canvas = element("canvas", { "aria-label": `bytes per second of ${rule.name}` });
    const details = new Map(((detail && detail.backends) || []).map((backend) => [backend.name, backend]));
    const card = element(
      "article",
      { class: "rule", "data-rule": rule.name },
      element("h3", {}, rule.name, element("span", { class: "bind" }, detail && Array.isArray(detail.binds) ? detail.binds.join(" ") : ""), element("span", { class: "bind" }, rule.mode)),
      element(
        "div",
        { class: "figures" },
        element("span", {}, "connections ", element("b", { "data-role": "active" }, rule.connections_active), " open, ", element("b", {}, rule.connections_total), " in all"),
        element("span", {}, "in ", element("b", {}, `${bytes(latest.rateIn)}/s`), " (", bytes(rule.bytes_in), ")"),
        element("span", {}, "out ", element("b", {}, `${bytes(latest.rateOut)}/s`), " (", bytes(rule.bytes_out), ")"),
      ),
      canvas,
      element("div", { class: "legend" }, element("span", { class: "in" }, "— from clients"), "  ", element("span", { class: "out" }, "— to clients"), ` · last ${Math.round((HISTORY * REFRESH_MS) / 60000)} minutes`),
    );
    if (rule.backends.length > 0) {
      const body = element("tbody", {});
      for (const backend of rule.backends) body.append(backendRow(rule.name, backend, details.get(backend.name)));
      card.append(
        element(
          "table",
          {},
          element("thead", {}, element("tr", {}, ...["backend", "address", "weight", "state", "health", "open", "total", ""].map((text) => element("th", {}, text)))),
          body,
        ),
      );
    }
    return { card, draw: () => draw(canvas, series) };
  }

  function renderErrors(errors) {
    const body = $("errors").querySelector("tbody");
    body.replaceChildren(
      ...errors
        .slice()
        .reverse()
        .map((error) =>
          element(
            "tr",
            {},
            element("td", {}, new Date(error.time).toLocaleTimeString()),
            element("td", { class: "mono" }, error.rule),
            element("td", { class: "mono" }, error.client),
            element("td", {}, error.result),
          ),
        ),
    );
    $("no-errors").hidden = errors.length > 0;
    $("errors").hidden = errors.length === 0;
  }

  function showProblem(message) {
    const problem = $("problem");
    problem.hidden = message === undefined;
    problem.textContent = message || "";
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const [status, rules, errors] = await Promise.all([
        api("GET", "/api/v1/status"),
        api("GET", "/api/v1/rules").catch(() => undefined),
        api("GET", "/api/v1/errors").catch(() => undefined),
        updateHistory().catch(() => undefined),
      ]);
      const now = Date.now();
      const details = new Map(((rules && rules.rules) || []).map((rule) => [rule.name, rule]));
      const cards = status.rules.map((rule) => ruleCard(rule, details.get(rule.name), rates(rule.name)));
      $("rules").replaceChildren(...cards.map((each) => each.card));
      for (const each of cards) each.draw();
      const connections = status.connections;
      $("summary").textContent = `${status.version} · up ${status.uptime_seconds} s · ${status.rules.length} rule(s) · ${connections.active} connection(s) open, ${connections.total} in all · ${status.config_reloads} reload(s)`;
      renderErrors((errors && errors.errors) || []);
      showProblem(undefined);
      document.body.dataset.refreshed = String(now);
    } catch (error) {
      showProblem(`cannot reach oi: ${error.message || error}`);
    } finally {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-form").hidden = true;
    void refresh();
  });
  void refresh();
})();
