// The trace explorer: a search page and a trace page over the search API, plain JavaScript with
// no build step and no other host. Every value from a trace is put in the page as text
// (textContent, never innerHTML): a span output holding "<script>" shows as those characters.
// The URL holds the view (filter, order, experiments, time range, trace, span), so a link
// reopens it.

const PAGE_SIZE = 50; // rows per page unless the URL has size=
const KEY_STORAGE = "tracestream.apiKey";
const RANGES_MS = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const USER = "mlflow.trace.user";
const SESSION = "mlflow.trace.session";
const TOKENS = "mlflow.trace.tokenUsage";
const $ = (selector) => document.querySelector(selector);

// ------------------------------------------------------------------ small DOM helpers

/** An element with text content (never parsed as HTML), attributes and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function parseJson(text) {
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10e3 ? 2 : 1)} s`;
}

function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  // UTC to the second: the API's request times are whole seconds unless the client sent ms.
  return Number.isNaN(date.getTime()) ? iso : `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

// ------------------------------------------------------------------ API access

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

/** A request to the API carrying the key when there is one; a 401/403 shows the login. */
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (options.json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || (options.json !== undefined ? "POST" : "GET"),
    signal: options.signal,
    headers,
    body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
  });
  if (response.ok || (response.status !== 401 && response.status !== 403)) reveal();
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const error = new ApiError(response.status, body);
    if (response.status === 401 || response.status === 403) showLogin(error);
    throw error;
  }
  return options.raw ? response : response.json();
}

// ------------------------------------------------------------------ view state in the URL

function readState() {
  const query = new URLSearchParams(location.search);
  return {
    filter: query.get("filter") || "",
    order: query.get("order") || "",
    locations: query.get("locations") || "",
    range: query.get("range") || "",
    trace: query.get("trace") || "",
    span: query.get("span") || "",
    size: query.get("size") || "",
    view: query.get("view") || "",
  };
}

function stateUrl(state) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(state)) if (value) query.set(name, value);
  const text = query.toString();
  return text ? `?${text}` : location.pathname;
}

function navigate(changes, { replace = false } = {}) {
  const state = { ...readState(), ...changes };
  const url = stateUrl(state);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

// ------------------------------------------------------------------ login

function showLogin(error) {
  sessionStorage.removeItem(KEY_STORAGE);
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  // Nothing read with a key stays in the page once the key is refused.
  $("#traces tbody").replaceChildren();
  $("#span-tree").replaceChildren();
  $("#span-detail").replaceChildren();
  $("#login").hidden = false;
  $("#login-error").textContent = error && error.status === 403 ? "That key was refused." : "";
  $("#api-key").focus();
}

// ------------------------------------------------------------------ search page

const search = { token: null, sent: null, rows: 0 };

/** The filter sent: the box's filter, and the quick time range as a timestamp_ms clause in
 * front of it; ``prefix`` is what was put before the user's text (to map error positions). */
function effectiveFilter(state) {
  const text = state.filter.trim();
  const range = RANGES_MS[state.range];
  if (!range) return { filter: text || null, prefix: "" };
  const clause = `timestamp_ms >= ${Date.now() - range}`;
  if (!text) return { filter: clause, prefix: null };
  const prefix = `${clause} AND (`;
  return { filter: `${prefix}${text})`, prefix };
}

function locationsOf(state) {
  const ids = state.locations.split(",").map((s) => s.trim()).filter(Boolean);
  return ids.length ? ids : null;
}

async function runSearch(state, append) {
  const { filter, prefix } = effectiveFilter(state);
  const body = {
    filter,
    order_by: state.order ? [state.order] : null,
    max_results: Number(state.size) || PAGE_SIZE,
    page_token: append ? search.token : null,
    locations: locationsOf(state),
    include_spans: false,
  };
  const errorBox = $("#filter-error");
  const status = $("#search-status");
  const started = performance.now();
  status.textContent = "Searching…";
  $("#more").hidden = true;
  let page;
  try {
    page = await api("api/v1/traces/search", { json: body });
  } catch (error) {
    status.textContent = "";
    if (error.status === 401 || error.status === 403) return;
    showFilterError(error, prefix);
    if (!append) $("#traces tbody").replaceChildren();
    return;
  }
  errorBox.hidden = true;
  const tbody = $("#traces tbody");
  const rows = page.traces.map(traceRow);
  if (append) tbody.append(...rows);
  else tbody.replaceChildren(...rows);
  search.token = page.next_page_token;
  search.rows = append ? search.rows + rows.length : rows.length;
  rememberLocations(page.traces);
  const took = Math.round(performance.now() - started);
  status.textContent = `${search.rows} trace${search.rows === 1 ? "" : "s"}${search.token ? " so far" : ""} · ${took} ms`;
  $("#more").hidden = !search.token;
  document.body.dataset.searched = String(Date.now()); // tests and the bench wait on it
}

/** The API's message, and its caret line under the user's own text (the time-range clause put
 * in front of it is cut off both lines, so the caret stays under the right character). */
function showFilterError(error, prefix) {
  const box = $("#filter-error");
  box.hidden = false;
  box.querySelector(".message").textContent = `${error.body.error_code || "ERROR"}: ${error.message}`;
  let highlight = error.body.highlight || "";
  if (highlight && prefix) {
    const [line, caret = ""] = highlight.split("\n");
    if (line.startsWith(prefix) && caret.length > prefix.length) {
      highlight = `${line.slice(prefix.length, line.length - 1)}\n${caret.slice(prefix.length)}`;
    }
  }
  box.querySelector(".highlight").textContent = highlight;
  box.querySelector(".highlight").hidden = !highlight;
}

function tokenTotal(metadata) {
  const usage = parseJson(metadata?.[TOKENS]);
  return usage && typeof usage === "object" ? usage : {};
}

function compactTags(tags) {
  const own = Object.entries(tags || {}).filter(([key]) => !key.startsWith("mlflow."));
  const chips = own.slice(0, 3).map(([key, value]) => el("span", { class: "chip", title: `${key}=${value}`, text: `${key}=${value}` }));
  if (own.length > 3) chips.push(el("span", { class: "chip more", title: own.slice(3).map(([k, v]) => `${k}=${v}`).join("\n"), text: `+${own.length - 3}` }));
  return chips;
}

function traceRow(trace) {
  const info = trace.info;
  const metadata = info.trace_metadata || {};
  const tags = info.tags || {};
  const open = (event) => {
    if (event.target.closest("a") && (event.ctrlKey || event.metaKey || event.shiftKey)) return;
    event.preventDefault();
    navigate({ trace: info.trace_id, span: "" });
  };
  const link = el("a", { href: stateUrl({ ...readState(), trace: info.trace_id, span: "" }), class: "mono", title: info.trace_id, text: info.trace_id });
  return el(
    "tr",
    { "data-trace-id": info.trace_id, class: info.state === "ERROR" ? "row-error" : "", onclick: open },
    el("td", {}, link),
    el("td", { class: "preview", title: info.request_preview, text: info.request_preview ?? "" }),
    el("td", { class: "preview", title: info.response_preview, text: info.response_preview ?? "" }),
    el("td", {}, el("span", { class: `state s-${info.state}`, text: info.state })),
    el("td", { class: "nowrap", text: formatTime(info.request_time) }),
    el("td", { class: "num", text: formatMs(info.execution_duration_ms) }),
    el("td", { text: tags["mlflow.traceName"] ?? "" }),
    el("td", { text: metadata[USER] ?? "" }),
    el("td", { text: metadata[SESSION] ?? "" }),
    el("td", { class: "num", text: tokenTotal(metadata).total_tokens ?? "" }),
    el("td", { class: "tags" }, compactTags(tags)),
  );
}

const seenLocations = new Set();
function rememberLocations(traces) {
  const before = seenLocations.size;
  for (const trace of traces) {
    const id = trace.info.trace_location?.mlflow_experiment?.experiment_id;
    if (id) seenLocations.add(id);
  }
  if (seenLocations.size !== before) {
    $("#known-locations").replaceChildren(...[...seenLocations].sort().map((id) => el("option", { value: id })));
  }
}

function renderSortHeaders(order) {
  const [key, direction = "ASC"] = order ? splitOrder(order) : ["", ""];
  for (const th of document.querySelectorAll("#traces th[data-sort]")) {
    const active = th.dataset.sort === key;
    th.classList.toggle("sorted", active);
    th.setAttribute("aria-sort", active ? (direction === "DESC" ? "descending" : "ascending") : "none");
  }
}

function splitOrder(order) {
  const match = /^(.*?)(?:\s+(ASC|DESC))?$/i.exec(order.trim());
  return [match[1], (match[2] || "ASC").toUpperCase()];
}

function onSort(event) {
  const th = event.target.closest("th[data-sort]");
  if (!th) return;
  const state = readState();
  const [key, direction] = state.order ? splitOrder(state.order) : ["", ""];
  // A new column starts descending (newest, slowest, largest first), a second click flips it.
  const next = key === th.dataset.sort && direction === "DESC" ? "ASC" : "DESC";
  navigate({ order: `${th.dataset.sort} ${next}` });
}

async function exportNdjson() {
  const state = readState();
  const { filter } = effectiveFilter(state);
  const query = new URLSearchParams();
  if (filter) query.set("filter", filter);
  if (state.order) query.append("order_by", state.order);
  for (const id of locationsOf(state) || []) query.append("locations", id);
  const status = $("#search-status");
  status.textContent = "Exporting…";
  try {
    // Through fetch, not a plain link: the key goes in a header.
    const response = await api(`api/v1/traces/export?${query}`, { raw: true });
    const blob = await response.blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: "traces.ndjson" });
    document.body.append(link);
    link.click();
    link.remove();
    status.textContent = `Exported ${response.headers.get("X-Total-Count") ?? "?"} traces`;
  } catch (error) {
    status.textContent = `Export failed: ${error.message}`;
  }
}

// ------------------------------------------------------------------ trace page

let shown = null; // {id, trace, spans: Map, order: [span]} of the trace on screen

function spanType(span) {
  return parseJson(span.attributes?.["mlflow.spanType"]) || "UNKNOWN";
}

function isError(span) {
  return span.status?.code === "STATUS_CODE_ERROR" || span.status?.code === "ERROR";
}

const nanos = (value) => Number(value ?? 0) / 1e6; // ns → ms (float spacing at 2026 epochs: 256 ns)

/** The spans in tree order (depth first, children by start time) with their depth. */
function spanTree(spans) {
  const byId = new Map(spans.map((span) => [span.span_id, span]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    const parent = span.parent_span_id;
    if (parent && byId.has(parent) && parent !== span.span_id) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(span);
    } else roots.push(span);
  }
  const byStart = (a, b) => nanos(a.start_time_unix_nano) - nanos(b.start_time_unix_nano);
  const ordered = [];
  const stack = roots.sort(byStart).reverse().map((span) => [span, 0]);
  while (stack.length) {
    const [span, depth] = stack.pop();
    const kids = (children.get(span.span_id) || []).sort(byStart);
    ordered.push({ span, depth, childCount: kids.length });
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1]);
  }
  return { byId, ordered };
}

async function showTrace(state) {
  const errorBox = $("#trace-error");
  errorBox.textContent = "";
  if (!shown || shown.id !== state.trace) {
    $("#trace-title").textContent = state.trace;
    $("#span-tree").replaceChildren(el("p", { class: "status", text: "Loading…" }));
    $("#span-detail").replaceChildren();
    let trace;
    try {
      trace = await api(`api/v1/traces/${encodeURIComponent(state.trace)}`);
    } catch (error) {
      if (error.status === 401 || error.status === 403) return;
      $("#span-tree").replaceChildren();
      errorBox.textContent = `${error.body.error_code || "ERROR"}: ${error.message}`;
      shown = null;
      return;
    }
    const spans = trace.data?.spans || [];
    const { byId, ordered } = spanTree(spans);
    shown = { id: state.trace, trace, byId, ordered };
    renderSummary(trace, spans);
    renderSpanTree(ordered);
    renderAssessments(trace.info.assessments || []);
    $("#span-find").value = "";
    $("#span-find-count").textContent = "";
  }
  const selected = shown.byId.get(state.span) || shown.ordered[0]?.span;
  selectSpan(selected);
}

function summaryItem(label, value, attrs = {}) {
  if (value === undefined || value === null || value === "") return [];
  return [el("dt", { text: label }), el("dd", { ...attrs, text: value })];
}

function renderSummary(trace, spans) {
  const info = trace.info;
  const metadata = info.trace_metadata || {};
  const usage = tokenTotal(metadata);
  const cost = parseJson(metadata["mlflow.trace.cost"]);
  const costText = cost && typeof cost === "object" ? cost.total_cost ?? JSON.stringify(cost) : cost;
  $("#summary").replaceChildren(
    ...summaryItem("State", info.state, { class: `state s-${info.state}`, "data-field": "state" }),
    ...summaryItem("Duration", formatMs(info.execution_duration_ms), { "data-field": "duration" }),
    ...summaryItem("Spans", spans.length, { "data-field": "spans" }),
    ...summaryItem("Tokens in / out / total", usage.total_tokens === undefined ? "" : `${usage.input_tokens ?? "–"} / ${usage.output_tokens ?? "–"} / ${usage.total_tokens}`, { "data-field": "tokens" }),
    ...summaryItem("Cost", costText),
    ...summaryItem("Request time", formatTime(info.request_time)),
    ...summaryItem("User", metadata[USER], { "data-field": "user" }),
    ...summaryItem("Session", metadata[SESSION], { "data-field": "session" }),
    ...summaryItem("Client request id", info.client_request_id, { class: "mono" }),
    ...summaryItem("Experiment", info.trace_location?.mlflow_experiment?.experiment_id),
  );
  $("#trace-tags").replaceChildren(
    ...Object.entries(info.tags || {}).map(([k, v]) => el("span", { class: "chip", title: k, text: `${k}=${v}` })),
  );
  $("#trace-metadata .kv").replaceChildren(
    ...Object.entries(metadata).map(([k, v]) => el("div", {}, el("span", { class: "k", text: k }), el("span", { class: "v", text: v }))),
  );
}

function renderSpanTree(ordered) {
  const starts = ordered.map(({ span }) => nanos(span.start_time_unix_nano));
  const ends = ordered.map(({ span }) => nanos(span.end_time_unix_nano));
  const t0 = Math.min(...starts);
  const total = Math.max(Math.max(...ends) - t0, 1e-6);
  const fragment = document.createDocumentFragment();
  fragment.append(
    el("div", { class: "tree-head" }, el("span", { text: "Span" }), el("span", { text: `Timeline · ${formatMs(total)}` })),
  );
  ordered.forEach(({ span, depth, childCount }, i) => {
    const type = spanType(span);
    const start = starts[i] - t0;
    const duration = ends[i] - starts[i];
    const error = isError(span);
    const bar = el("span", {
      class: `bar t-${type}`,
      style: `left:${((start / total) * 100).toFixed(3)}%;width:${Math.max((duration / total) * 100, 0.15).toFixed(3)}%`,
      title: `${formatMs(start)} + ${formatMs(duration)}`,
    });
    fragment.append(
      el(
        "div",
        {
          class: `span-row${error ? " error" : ""}`,
          role: "treeitem",
          "aria-level": depth + 1,
          "data-span-id": span.span_id,
          "data-depth": depth,
          "data-name": span.name,
          "data-children": childCount,
          tabindex: 0,
        },
        el(
          "span",
          { class: "span-label", style: `padding-left:${depth * 16 + 4}px` },
          error ? el("span", { class: "err-mark", title: "ERROR", text: "⚠" }) : null,
          el("span", { class: `type t-${type}`, text: type }),
          el("span", { class: "span-name", text: span.name }),
          el("span", { class: "span-dur", text: formatMs(duration) }),
        ),
        el("span", { class: "timeline" }, bar),
      ),
    );
  });
  $("#span-tree").replaceChildren(fragment);
  document.body.dataset.traceRendered = shown?.id ?? "";
}

function selectSpan(span) {
  for (const row of document.querySelectorAll(".span-row.selected")) row.classList.remove("selected");
  if (!span) {
    $("#span-detail").replaceChildren();
    return;
  }
  const row = document.querySelector(`.span-row[data-span-id="${CSS.escape(span.span_id)}"]`);
  row?.classList.add("selected");
  renderSpanDetail(span);
}

// --- span detail

/** Collapsible, pretty-printed JSON built from elements (the values as text). */
function jsonTree(value, label = null, depth = 0) {
  const key = label === null ? null : el("span", { class: "j-key", text: `${label}: ` });
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const brackets = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
    const details = el(
      "details",
      { class: "j-node", open: depth < 3 },
      el("summary", {}, key, el("span", { class: "j-punct", text: `${brackets[0]}${entries.length ? "" : brackets[1]}` }), entries.length ? el("span", { class: "j-count", text: ` ${entries.length} ${Array.isArray(value) ? "items" : "keys"}` }) : null),
      el("div", { class: "j-children" }, entries.map(([k, v]) => jsonTree(v, Array.isArray(value) ? null : k, depth + 1))),
    );
    if (entries.length) details.append(el("span", { class: "j-punct", text: brackets[1] }));
    return details;
  }
  const kind = value === null ? "null" : typeof value;
  return el("div", { class: "j-leaf" }, key, el("span", { class: `j-${kind}`, text: JSON.stringify(value) }));
}

/** Chat messages of an input or output ({messages: [...]}, OpenAI's choices, a bare list). */
function chatMessages(value) {
  const asMessages = (list) => (Array.isArray(list) && list.length && list.every((m) => m && typeof m === "object" && "role" in m) ? list : null);
  if (!value || typeof value !== "object") return null;
  if (Array.isArray(value)) return asMessages(value);
  if (asMessages(value.messages)) return value.messages;
  if (Array.isArray(value.choices)) return asMessages(value.choices.map((c) => c?.message).filter(Boolean));
  return null;
}

function messageText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => (typeof part === "string" ? part : part?.text ?? JSON.stringify(part))).join("\n");
  return JSON.stringify(content, null, 2);
}

function ioBlock(title, raw, cls) {
  if (raw === undefined) return null;
  const value = parseJson(raw);
  const messages = chatMessages(value);
  return el(
    "section",
    { class: `io ${cls}` },
    el("h3", { text: title }),
    messages
      ? el("div", { class: "messages" }, messages.map((m) => el("div", { class: `message role-${m.role}` }, el("span", { class: "role", text: m.role }), el("pre", { class: "content", text: messageText(m.content ?? m.tool_calls ?? "") }))))
      : null,
    typeof value === "object" && value !== null ? jsonTree(value) : el("pre", { class: "content", text: String(value) }),
  );
}

const IO_ATTRIBUTES = new Set(["mlflow.spanInputs", "mlflow.spanOutputs"]);

function renderSpanDetail(span) {
  const attributes = span.attributes || {};
  const type = spanType(span);
  const duration = nanos(span.end_time_unix_nano) - nanos(span.start_time_unix_nano);
  const usage = parseJson(attributes["mlflow.chat.tokenUsage"]);
  const rest = Object.entries(attributes).filter(([key]) => !IO_ATTRIBUTES.has(key));
  const events = span.events || [];
  $("#span-detail").replaceChildren(
    el("h2", {}, el("span", { class: `type t-${type}`, text: type }), " ", el("span", { class: "span-name", text: span.name })),
    el(
      "dl",
      { class: "summary small" },
      ...summaryItem("Status", `${(span.status?.code || "").replace("STATUS_CODE_", "")}${span.status?.message ? `: ${span.status.message}` : ""}`, { class: isError(span) ? "s-ERROR" : "", "data-field": "span-status" }),
      ...summaryItem("Duration", formatMs(duration)),
      ...summaryItem("Tokens in / out / total", usage && typeof usage === "object" ? `${usage.input_tokens ?? "–"} / ${usage.output_tokens ?? "–"} / ${usage.total_tokens ?? "–"}` : ""),
      ...summaryItem("Span id", span.span_id, { class: "mono" }),
    ),
    ioBlock("Inputs", attributes["mlflow.spanInputs"], "inputs"),
    ioBlock("Outputs", attributes["mlflow.spanOutputs"], "outputs"),
    events.length
      ? el("section", { class: "events" }, el("h3", { text: "Events" }), events.map((event) => eventBlock(event)))
      : null,
    el(
      "section",
      { class: "attributes" },
      el("h3", { text: "Attributes" }),
      el("table", {}, el("tbody", {}, rest.map(([key, value]) => el("tr", {}, el("th", { text: key }), el("td", {}, jsonCell(parseJson(value))))))),
    ),
  );
}

function jsonCell(value) {
  return value !== null && typeof value === "object" ? jsonTree(value) : el("span", { class: "mono", text: typeof value === "string" ? value : JSON.stringify(value) });
}

function eventBlock(event) {
  const attributes = event.attributes || {};
  const value = (key) => {
    const v = attributes[key];
    return typeof v === "string" ? parseJson(v) : v;
  };
  if (event.name === "exception") {
    return el(
      "div",
      { class: "event exception" },
      el("p", {}, el("strong", { text: String(value("exception.type") ?? "exception") }), ": ", el("span", { text: String(value("exception.message") ?? "") })),
      attributes["exception.stacktrace"] ? el("pre", { class: "stack", text: String(value("exception.stacktrace")) }) : null,
    );
  }
  return el("div", { class: "event" }, el("strong", { text: event.name }), jsonTree(attributes));
}

function renderAssessments(assessments) {
  const box = $("#assessments");
  if (!assessments.length) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(
    el("h2", { text: "Assessments" }),
    el(
      "table",
      { class: "assessments" },
      el("thead", {}, el("tr", {}, ["Name", "Kind", "Value", "Source", "Rationale", "Span", "Valid"].map((h) => el("th", { text: h })))),
      el(
        "tbody",
        {},
        assessments.map((a) => {
          const kind = a.feedback ? "feedback" : "expectation";
          const body = a.feedback || a.expectation || {};
          const value = body.serialized_value ? parseJson(body.serialized_value.value) : body.value;
          const error = body.error ? ` (error ${body.error.error_code}${body.error.error_message ? `: ${body.error.error_message}` : ""})` : "";
          return el(
            "tr",
            { class: a.valid === false ? "overridden" : "" },
            el("td", { text: a.assessment_name }),
            el("td", { text: `${kind}${a.overrides ? ` (overrides ${a.overrides})` : ""}` }),
            el("td", { class: "mono", text: `${JSON.stringify(value)}${error}` }),
            el("td", { text: `${a.source?.source_type ?? ""} ${a.source?.source_id ?? ""}`.trim() }),
            el("td", { text: a.rationale ?? "" }),
            el("td", { class: "mono", text: a.span_id ?? "" }),
            el("td", { text: a.valid === false ? "no" : "yes" }),
          );
        }),
      ),
    ),
  );
}

function onFindSpans() {
  const needle = $("#span-find").value.trim().toLowerCase();
  let count = 0;
  let first = null;
  for (const row of document.querySelectorAll(".span-row")) {
    const match = Boolean(needle) && row.dataset.name.toLowerCase().includes(needle);
    row.classList.toggle("match", match);
    row.classList.toggle("dim", Boolean(needle) && !match);
    if (match) {
      count += 1;
      first ??= row;
    }
  }
  $("#span-find-count").textContent = needle ? `${count} span${count === 1 ? "" : "s"} named like “${needle}”` : "";
  first?.scrollIntoView({ block: "nearest" });
}

// ------------------------------------------------------------------ live view

const NEW_TRACES_POLL_MS = 2000;
let live = null; // {abort: AbortController, seen: Set} while the live view is open

function liveItem(cls, when, ...children) {
  return el("li", { class: cls }, el("span", { class: "when", text: new Date(when).toISOString().slice(11, 19) }), ...children);
}

function traceLink(id) {
  return el("a", { class: "mono", href: stateUrl({ trace: id }), text: id, onclick: (event) => {
    event.preventDefault();
    navigate({ view: "", trace: id, span: "" });
  } });
}

/** The alerts topic through the API's server-sent events, read with fetch (EventSource cannot
 * send the API key header). */
async function followAlerts(session) {
  const status = $("#live-status");
  try {
    const response = await api("api/v1/live/alerts", { raw: true, signal: session.abort.signal });
    status.textContent = "Live: connected";
    document.body.dataset.liveConnected = "true";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
        if (block.includes("event: alert") && data) showAlert(JSON.parse(data));
      }
    }
    status.textContent = "Live: the stream ended; reopen the page to follow again";
  } catch (error) {
    if (error.name !== "AbortError") status.textContent = `Live alerts unavailable: ${error.message}`;
  }
}

function showAlert(alert) {
  const failed = alert.failed_spans || [];
  const span = failed[failed.length - 1] || {};
  const why = span.status_message || (span.exception_types || []).join(", ");
  $("#live-alerts").prepend(
    liveItem(
      "live-alert",
      alert.alert_time_ms,
      traceLink(alert.trace_id),
      el("span", { text: alert.trace_name ?? "" }),
      el("span", { class: "failed", text: `failed in ${span.name ?? "?"}${why ? `: ${why}` : ""}` }),
    ),
  );
}

/** Traces that became searchable: the newest by request time, polled; those seen before the
 * view opened are not shown. */
async function pollNewTraces(session, first) {
  while (!session.abort.signal.aborted) {
    try {
      const page = await api("api/v1/traces/search", {
        json: { order_by: ["timestamp_ms DESC"], max_results: 50, include_spans: false },
        signal: session.abort.signal,
      });
      for (const trace of page.traces.slice().reverse()) {
        const info = trace.info;
        if (session.seen.has(info.trace_id)) continue;
        session.seen.add(info.trace_id);
        if (first) continue;
        $("#live-traces").prepend(
          liveItem(
            info.state === "ERROR" ? "row-error" : "",
            Date.now(),
            traceLink(info.trace_id),
            el("span", { class: `state s-${info.state}`, text: info.state }),
            el("span", { text: info.tags?.["mlflow.traceName"] ?? "" }),
            el("span", { class: "preview", text: info.request_preview ?? "" }),
          ),
        );
      }
    } catch (error) {
      if (error.name === "AbortError") return;
    }
    first = false;
    await new Promise((resolve) => setTimeout(resolve, NEW_TRACES_POLL_MS));
  }
}

function openLive() {
  if (live) return;
  live = { abort: new AbortController(), seen: new Set() };
  $("#live-status").textContent = "Live: connecting…";
  followAlerts(live);
  pollNewTraces(live, true);
}

function closeLive() {
  if (!live) return;
  live.abort.abort();
  live = null;
  delete document.body.dataset.liveConnected;
}

// ------------------------------------------------------------------ routing

let lastSearch = null; // the search state whose rows are on screen

async function render() {
  const state = readState();
  const onLive = state.view === "live" && !state.trace;
  const onTrace = Boolean(state.trace);
  $("#search-view").hidden = onTrace || onLive;
  $("#trace-view").hidden = !onTrace;
  $("#live-view").hidden = !onLive;
  if (onLive) {
    document.title = "tracestream · live";
    openLive();
    // The live view makes no other request: the page shows once the API has answered.
    return;
  }
  closeLive();
  if (onTrace) {
    document.title = `tracestream · ${state.trace}`;
    $("#back").href = stateUrl({ ...state, trace: "", span: "" });
    await showTrace(state);
    return;
  }
  document.title = "tracestream · traces";
  $("#filter").value = state.filter;
  $("#locations").value = state.locations;
  $("#time-range").value = state.range;
  renderSortHeaders(state.order);
  const key = JSON.stringify([state.filter, state.order, state.locations, state.range, state.size]);
  if (key !== lastSearch) {
    lastSearch = key;
    await runSearch(state, false);
  }
}

async function start() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lastSearch = null; // submitting again searches again, even unchanged
    navigate({ filter: $("#filter").value, locations: $("#locations").value, range: $("#time-range").value });
  });
  $("#time-range").addEventListener("change", () => $("#search-form").requestSubmit());
  $("#traces thead").addEventListener("click", onSort);
  $("#more").addEventListener("click", () => runSearch(readState(), true));
  $("#export").addEventListener("click", exportNdjson);
  $("#span-find").addEventListener("input", onFindSpans);
  $("#span-find").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const row = document.querySelector(".span-row.match");
    if (row) navigate({ span: row.dataset.spanId }, { replace: true });
  });
  $("#span-tree").addEventListener("click", (event) => {
    const row = event.target.closest(".span-row");
    if (row) navigate({ span: row.dataset.spanId }, { replace: true });
  });
  $("#span-tree").addEventListener("keydown", (event) => {
    // Rows take the focus (Tab); Enter or Space selects, arrows move.
    const row = event.target.closest(".span-row");
    if (!row) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      navigate({ span: row.dataset.spanId }, { replace: true });
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      (event.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling)?.focus();
    }
  });
  $("#back").addEventListener("click", (event) => {
    event.preventDefault();
    navigate({ trace: "", span: "" });
  });
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("#api-key").value);
    await open();
  });
  $("#sign-out").addEventListener("click", () => showLogin(null));
  for (const [link, view] of [["#nav-live", "live"], ["#nav-traces", ""]]) {
    $(link).addEventListener("click", (event) => {
      event.preventDefault();
      navigate({ view, trace: "", span: "" });
    });
  }
  window.addEventListener("popstate", render);
  await open();
}

/** Renders the view the URL names. The page stays hidden until the API has answered a data
 * request: with keys set and none (or a wrong one) given, that answer is a 401/403 and only the
 * login prompt shows. The first request is the view's own, so there is no extra round trip. */
async function open() {
  $("#login").hidden = true;
  lastSearch = null;
  shown = null;
  await render();
}

function reveal() {
  if (!$("#login").hidden) return;
  $("#app").hidden = false;
  $("#sign-out").hidden = !apiKey();
}

start();
