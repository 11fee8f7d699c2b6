// gauge view: the samples table (filters, search, sort; only visible rows drawn),
// transcripts, run-vs-run comparison and live refresh. No dependencies, no network:
// samples come from gzip+base64 chunks in this page, decoded when first needed.
"use strict";
(function () {
  const META = JSON.parse(document.getElementById("gauge-meta").textContent);
  const RUNS = META.runs;
  const ROW_H = 26;
  const rowCache = new Map();
  const detailCache = new Map();
  const state = {
    tab: "overview", run: "all", status: "all", scorer: "", score: "", meta: "", q: "",
    sort: "", desc: "0", open: "", side: "0", a: "", b: "", only: "1",
  };

  const esc = (v) => String(v == null ? "" : v).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const $ = (sel, root) => (root || document).querySelector(sel);
  const num = (v) => (typeof v === "number" ? v : null);
  const fmt = (v, d) => (v == null ? "" : typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(d == null ? 3 : d)) : String(v));
  const money = (v) => (v == null ? "unknown" : "$" + (v >= 0.0001 || v === 0 ? v.toFixed(4) : v.toPrecision(2)));
  const secs = (v) => (v == null ? "" : v >= 100 ? v.toFixed(0) : v.toPrecision(3));
  const json = (v) => JSON.stringify(v, null, 2);

  async function unpack(id) {
    const el = document.getElementById(id);
    if (!el) return null;
    const bin = atob(el.textContent);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  function rows(r) {
    if (!rowCache.has(r)) {
      rowCache.set(r, unpack("rows-" + r).then((list) => {
        for (const row of list) { row.r = r; row.k = row.id + "|" + row.ep; }
        return list;
      }));
    }
    return rowCache.get(r);
  }

  async function detail(r, i) {
    const c = Math.floor(i / META.chunk);
    const key = r + "-" + c;
    if (!detailCache.has(key)) detailCache.set(key, unpack("detail-" + key));
    return (await detailCache.get(key))[i - c * META.chunk];
  }

  // ---- state in the URL hash, so a reload (live mode) or a shared link keeps the view.
  // Runs are named there by journal file, not position: a run added meanwhile may sort
  // before them.
  const RUN_KEYS = ["run", "a", "b"];
  const byFile = new Map(RUNS.map((run, r) => [run.file, String(r)]));
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const key of Object.keys(state)) if (params.has(key)) state[key] = params.get(key);
    for (const key of RUN_KEYS) {
      if (state[key] !== "all" && state[key] !== "") state[key] = byFile.get(state[key]) || (key === "run" ? "all" : "");
    }
    if (state.open) {
      const at = state.open.lastIndexOf(":");
      const r = byFile.get(state.open.slice(0, at));
      state.open = r === undefined ? "" : r + ":" + state.open.slice(at + 1);
    }
  }
  function writeHash() {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value === "") continue;
      if (RUN_KEYS.includes(key) && value !== "all") params.set(key, RUNS[Number(value)].file);
      else if (key === "open") params.set(key, RUNS[Number(value.split(":")[0])].file + ":" + value.split(":")[1]);
      else params.set(key, value);
    }
    history.replaceState(null, "", "#" + params.toString());
  }

  // ---- tabs
  function show(tab) {
    state.tab = tab;
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("on", b.dataset.tab === tab);
    for (const id of ["overview", "samples", "compare"]) document.getElementById(id).hidden = id !== tab;
    writeHash();
    if (tab === "samples") return samplesTab();
    if (tab === "compare") return compareTab();
    return Promise.resolve();
  }

  // ---- a virtual table: only the rows in view are in the DOM
  function virtualTable(host, columns, items, onOpen) {
    const cols = columns.map((c) => c.w).join(" ");
    host.innerHTML = `<div class="vt" style="--cols:${cols}"><div class="vt-head">${columns.map(
      (c) => `<span data-key="${c.key || ""}" title="${esc(c.title || c.label)}">${esc(c.label)}${state.sort && state.sort === c.key ? (state.desc === "1" ? " ▼" : " ▲") : ""}</span>`).join("")}</div>
      <div class="vt-body"><div class="vt-space"></div><div class="vt-rows"></div></div></div>`;
    const body = $(".vt-body", host);
    const space = $(".vt-space", host);
    const list = $(".vt-rows", host);
    space.style.height = items.length * ROW_H + "px";
    let drawn = -1;
    function draw(force) {
      const first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 5);
      if (first === drawn && !force) return;
      drawn = first;
      const last = Math.min(items.length, first + Math.ceil(body.clientHeight / ROW_H) + 10);
      let html = "";
      for (let k = first; k < last; k++) {
        const item = items[k];
        const sel = state.open === item.r + ":" + item.i ? " sel" : "";
        html += `<div class="vr${sel}" data-k="${k}">` + columns.map((c) => {
          const [text, cls] = c.cell(item);
          return `<span class="${cls || ""}" title="${esc(text)}">${esc(text)}</span>`;
        }).join("") + "</div>";
      }
      list.style.top = first * ROW_H + "px";
      list.innerHTML = html;
    }
    body.addEventListener("scroll", () => draw(false));
    list.addEventListener("click", (ev) => {
      const el = ev.target.closest(".vr");
      if (el) onOpen(items[Number(el.dataset.k)], Number(el.dataset.k));
    });
    $(".vt-head", host).addEventListener("click", (ev) => {
      const key = ev.target.dataset && ev.target.dataset.key;
      if (!key) return;
      state.desc = state.sort === key && state.desc === "0" ? "1" : "0";
      state.sort = key;
      writeHash();
      show(state.tab);
    });
    draw(true);
    return { redraw: () => draw(true) };
  }

  // ---- filters
  function scorerNames() {
    const names = [];
    for (const run of RUNS) for (const s of run.scorers) if (!names.includes(s)) names.push(s);
    return names;
  }
  function scoreOf(row) {
    const v = row.s[state.scorer];
    return v === undefined ? null : v;
  }
  function numeric(v) {
    if (typeof v === "boolean") return v ? 1 : 0;
    if (typeof v === "number") return v;
    if (v === "C") return 1;
    if (v === "I" || v === "N") return 0;
    if (v === "P") return 0.5;
    const f = parseFloat(v);
    return Number.isNaN(f) ? null : f;
  }
  function metaTests() {
    return state.meta.split(/[,;]\s*|\s+(?=[^=\s]+=)/).map((s) => s.trim()).filter(Boolean).map((term) => {
      const at = term.indexOf("=");
      const key = at < 0 ? term : term.slice(0, at);
      const want = at < 0 ? null : term.slice(at + 1);
      return (md) => (want === null ? key in md : String(typeof md[key] === "object" ? JSON.stringify(md[key]) : md[key]) === want);
    });
  }
  function passes(row, tests, q) {
    if (state.status === "error" && !row.err) return false;
    if (state.status === "correct" || state.status === "wrong") {
      if (row.err) return false;
      const n = numeric(scoreOf(row));
      if (n === null) return false;
      if ((state.status === "correct") !== (n >= 1)) return false;
    }
    if (state.score !== "" && String(scoreOf(row)) !== state.score) return false;
    for (const test of tests) if (!test(row.md)) return false;
    if (q) {
      const hay = (String(row.id) + "\n" + row.in + "\n" + row.tg + "\n" + row.out + "\n" + (row.err || "")).toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }
  function sortRows(items) {
    const key = state.sort;
    if (!key) return items;
    const get = key === "score" ? (x) => numeric(scoreOf(x)) : key === "run" ? (x) => RUNS[x.r].label : (x) => x[key];
    const sign = state.desc === "1" ? -1 : 1;
    return items.slice().sort((x, y) => {
      const a = get(x), b = get(y);
      if (a == null) return b == null ? 0 : 1;
      if (b == null) return -1;
      return (a < b ? -1 : a > b ? 1 : 0) * sign;
    });
  }

  const SAMPLE_COLS = [
    { label: "run", key: "run", w: "minmax(120px,1.2fr)", cell: (x) => [RUNS[x.r].label] },
    { label: "id", key: "id", w: "70px", cell: (x) => [x.id] },
    { label: "ep", key: "ep", w: "36px", cell: (x) => [x.ep] },
    { label: "score", key: "score", w: "60px", cell: (x) => scoreCell(x) },
    { label: "input", w: "minmax(140px,2fr)", cell: (x) => [x.in] },
    { label: "target", w: "minmax(80px,1fr)", cell: (x) => [x.tg] },
    { label: "output", w: "minmax(140px,2fr)", cell: (x) => [x.out] },
    { label: "tokens", key: "tok", w: "64px", cell: (x) => [fmt(x.tok), "num"] },
    { label: "cost", key: "cost", w: "76px", cell: (x) => [x.cost == null ? "" : money(x.cost), "num"] },
    { label: "latency", key: "lat", title: "model call seconds", w: "64px", cell: (x) => [secs(x.lat), "num"] },
    { label: "retries", key: "rt", w: "50px", cell: (x) => [x.rt || "", "num"] },
    { label: "error", w: "minmax(90px,1.2fr)", cell: (x) => [x.err || "", "err"] },
  ];
  function scoreCell(x) {
    if (x.err) return ["error", "err"];
    const v = scoreOf(x);
    const n = numeric(v);
    return [v == null ? "" : String(v), n == null ? "" : n >= 1 ? "ok" : "bad"];
  }

  let current = [];
  async function samplesTab() {
    const host = document.getElementById("samples");
    if (!state.scorer) state.scorer = scorerNames()[0] || "";
    if (!$(".filters", host)) host.innerHTML = filtersHTML() + '<div id="stable"></div>';
    const wanted = state.run === "all" ? RUNS.map((_, r) => r) : [Number(state.run)];
    const all = (await Promise.all(wanted.map(rows))).flat();
    fillScoreOptions(all);
    const tests = metaTests();
    const q = state.q.toLowerCase();
    current = sortRows(all.filter((row) => passes(row, tests, q)));
    $(".count", host).textContent = `${current.length.toLocaleString("en")} of ${all.length.toLocaleString("en")} samples`;
    virtualTable(document.getElementById("stable"), SAMPLE_COLS, current, (item) => openSample(item.r, item.i));
  }
  function filtersHTML() {
    const runOpts = RUNS.map((run, r) => `<option value="${r}">${esc(run.label)}</option>`).join("");
    const scorers = scorerNames().map((s) => `<option>${esc(s)}</option>`).join("");
    return `<div class="filters">
      <label>run <select data-f="run"><option value="all">all runs</option>${runOpts}</select></label>
      <label>scorer <select data-f="scorer">${scorers}</select></label>
      <label>status <select data-f="status"><option value="all">all</option><option value="correct">correct (score ≥ 1)</option>
        <option value="wrong">wrong (score &lt; 1)</option><option value="error">errored</option></select></label>
      <label>score <select data-f="score"><option value="">any</option></select></label>
      <label>metadata <input type="text" data-f="meta" placeholder="key=value, key2"></label>
      <label>search <input type="search" data-f="q" placeholder="id, input, output, error"></label>
      <span class="count"></span></div>`;
  }
  function fillScoreOptions(all) {
    const select = $('#samples select[data-f="score"]');
    const seen = new Set();
    for (const row of all) { const v = scoreOf(row); if (v != null && seen.size < 40) seen.add(String(v)); }
    const values = [...seen].sort();
    if (state.score && !seen.has(state.score)) values.push(state.score);
    select.innerHTML = '<option value="">any</option>' + values.map((v) => `<option>${esc(v)}</option>`).join("");
    // Only where it differs: rewriting a text box would move the caret of someone typing.
    for (const el of document.querySelectorAll("#samples [data-f]")) if (el.value !== state[el.dataset.f]) el.value = state[el.dataset.f];
  }

  // ---- transcripts
  function partHTML(part) {
    if (!part || typeof part !== "object") return `<pre>${esc(part)}</pre>`;
    if (part.type === "text") return `<pre>${esc(part.text)}</pre>`;
    if (part.type === "reasoning") {
      return `<details><summary class="sub">reasoning${part.redacted ? " (redacted)" : ""}</summary><pre>${esc(part.reasoning)}</pre></details>`;
    }
    if (part.type === "image" && /^data:image\//.test(part.image)) {
      return `<img alt="image" style="max-width:100%;max-height:320px" src="${esc(part.image)}">`;
    }
    const text = json(part);
    // Media as URLs or base64 is long and unreadable here: its kind and where it starts.
    return `<pre>[${esc(part.type)}] ${esc(text.length > 300 ? text.slice(0, 300) + " …" : text)}</pre>`;
  }
  function contentHTML(content) {
    if (content == null) return "";
    if (typeof content === "string") return `<pre>${esc(content)}</pre>`;
    if (Array.isArray(content)) return content.map(partHTML).join("");
    return `<pre>${esc(json(content))}</pre>`;
  }
  function messageHTML(m) {
    const calls = (m.tool_calls || []).map((c) => `<pre>→ ${esc(c.function || "tool")}(${esc(json(c.arguments))})${c.parse_error ? " [" + esc(c.parse_error) + "]" : ""}</pre>`).join("");
    const extra = (m.function ? " " + esc(m.function) : "") + (m.tool_call_id ? ` <code>${esc(m.tool_call_id)}</code>` : "");
    const error = m.error ? `<pre class="err">${esc(typeof m.error === "object" ? json(m.error) : m.error)}</pre>` : "";
    return `<div class="msg ${esc(m.role)}"><div class="role">${esc(m.role)}${extra}</div>${contentHTML(m.content)}${calls}${error}</div>`;
  }
  function kv(pairs) {
    return "<table class='kv'>" + pairs.filter((p) => p[1] !== "" && p[1] != null)
      .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("") + "</table>";
  }
  function transcriptHTML(r, d) {
    const badges = Object.entries(d.scores).map(([name, s]) => {
      const v = s && typeof s === "object" ? s.value : s;
      const n = numeric(v);
      return `<span class="badge ${n == null ? "" : n >= 1 ? "ok" : "bad"}">${esc(name)}: ${esc(v)}</span>`;
    }).join("") + (d.error ? `<span class="badge err">error: ${esc(d.error.type)}</span>` : "");
    const choices = (d.output && d.output.choices) || [];
    const out = choices.length ? choices.map((c) => messageHTML(c.message) + (c.stop_reason ? `<div class="sub">stop: ${esc(c.stop_reason)}</div>` : "")).join("")
      : d.completion != null ? `<pre>${esc(d.completion)}</pre>` : "<p class='sub'>no output</p>";
    const scores = Object.entries(d.scores).map(([name, s]) => (s && typeof s === "object"
      ? `<tr><td>${esc(name)}</td><td>${esc(s.value)}</td><td>${esc(s.answer)}</td><td><pre>${esc(s.explanation)}</pre></td><td>${s.metadata ? `<pre>${esc(json(s.metadata))}</pre>` : ""}</td></tr>`
      : `<tr><td>${esc(name)}</td><td>${esc(s)}</td><td></td><td></td><td></td></tr>`)).join("");
    const u = d.usage || {};
    const usage = kv([
      ["input tokens", fmt(u.input_tokens)], ["output tokens", fmt(u.output_tokens)], ["total tokens", fmt(u.total_tokens)],
      ["cache read tokens", fmt(u.input_tokens_cache_read)], ["reasoning tokens", fmt(u.reasoning_tokens)],
      ["cost", d.usage ? money(u.cost == null ? null : u.cost) : ""],
      ["model call latency (s)", secs(d.lat)], ["sample time (s)", secs(d.time)],
      ["retries", String(d.retries)], ["response cache", d.cache || ""],
    ]);
    let error = "";
    if (d.error) {
      const attempts = (d.error.attempts || []).map((a) => `<tr><td>${esc(a.attempt)}</td><td>${esc(a.kind)}</td><td>${esc(a.error)}</td><td>${esc(fmt(a.seconds))}</td><td>${esc(fmt(a.wait))}</td></tr>`).join("");
      error = `<h4>Error</h4><pre class="err">${esc(d.error.type)}: ${esc(d.error.message)}</pre>` +
        (attempts ? `<table><tr><th>attempt</th><th>kind</th><th>error</th><th>seconds</th><th>wait</th></tr>${attempts}</table>` : "");
    }
    const md = Object.keys(d.metadata).length ? `<h4>Metadata</h4><pre>${esc(json(d.metadata))}</pre>` : "";
    const store = Object.keys(d.store).length ? `<h4>Store</h4><pre>${esc(json(d.store))}</pre>` : "";
    return `<div class="transcript"><h4>${esc(RUNS[r].label)}</h4><div>${badges}</div>${error}
      <h4>Messages</h4>${d.messages.map(messageHTML).join("")}
      <h4>Output</h4>${out}<h4>Target</h4><pre>${esc(Array.isArray(d.target) ? d.target.join("\n") : d.target)}</pre>
      ${scores ? `<h4>Scores</h4><table><tr><th>scorer</th><th>value</th><th>answer</th><th>explanation</th><th>metadata</th></tr>${scores}</table>` : ""}
      <h4>Tokens, cost, timing</h4>${usage}${md}${store}</div>`;
  }
  async function openSample(r, i, side) {
    if (side !== undefined) state.side = side ? "1" : "0";
    state.open = r + ":" + i;
    writeHash();
    const drawer = document.getElementById("drawer");
    const d = await detail(r, i);
    const sameTask = RUNS.map((run, q) => q).filter((q) => q !== r && RUNS[q].task === RUNS[r].task);
    let cols = [transcriptHTML(r, d)];
    if (state.side === "1") {
      for (const q of sameTask) {
        const other = (await rows(q)).find((row) => row.id === d.id && row.ep === d.ep);
        cols.push(other ? transcriptHTML(q, await detail(q, other.i)) : `<div><h4>${esc(RUNS[q].label)}</h4><p class="sub">not in this run</p></div>`);
      }
    }
    drawer.innerHTML = `<div class="bar"><h3>sample ${esc(d.id)} · epoch ${esc(d.ep)}</h3>
      ${sameTask.length ? `<button data-act="side">${state.side === "1" ? "this run only" : "side by side with " + sameTask.length + " other run(s)"}</button>` : ""}
      <button data-act="prev" title="k">↑</button><button data-act="next" title="j">↓</button><button data-act="close" title="Esc">close</button></div>
      <div class="cols">${cols.map((c) => `<div>${c}</div>`).join("")}</div>`;
    drawer.hidden = false;
    for (const el of document.querySelectorAll(".vr.sel")) el.classList.remove("sel");
  }
  function closeSample() {
    document.getElementById("drawer").hidden = true;
    state.open = "";
    writeHash();
  }
  function step(delta) {
    if (state.tab === "compare") {
      const at = compared.findIndex((p) => p.r + ":" + p.i === state.open);
      if (compared[at + delta]) openPair(compared[at + delta]);
      return;
    }
    const at = current.findIndex((x) => x.r + ":" + x.i === state.open);
    const next = current[at + delta];
    if (next) openSample(next.r, next.i);
  }

  // ---- compare two runs on the same samples
  let compared = [];
  async function compareTab() {
    const host = document.getElementById("compare");
    if (state.a === "" || state.b === "") {
      const byTask = RUNS.findIndex((run, r) => RUNS.some((o, q) => q > r && o.task === run.task));
      const a = byTask < 0 ? 0 : byTask;
      const b = RUNS.findIndex((o, q) => q !== a && o.task === RUNS[a].task);
      state.a = String(a);
      state.b = String(b < 0 ? Math.min(1, RUNS.length - 1) : b);
    }
    if (!state.scorer) state.scorer = scorerNames()[0] || "";
    if (!$(".filters", host)) {
      const opts = RUNS.map((run, r) => `<option value="${r}">${esc(run.label)}</option>`).join("");
      host.innerHTML = `<div class="filters"><label>A <select data-c="a">${opts}</select></label>
        <label>B <select data-c="b">${opts}</select></label>
        <label>scorer <select data-c="scorer">${scorerNames().map((s) => `<option>${esc(s)}</option>`).join("")}</select></label>
        <label><input type="checkbox" data-c="only"> only where they disagree</label><span class="count"></span></div><div id="ctable"></div>`;
    }
    for (const el of host.querySelectorAll("[data-c]")) {
      if (el.type === "checkbox") el.checked = state.only === "1"; else el.value = state[el.dataset.c];
    }
    const a = Number(state.a), b = Number(state.b);
    const [ra, rb] = await Promise.all([rows(a), rows(b)]);
    const byKey = new Map(rb.map((row) => [row.k, row]));
    const pairs = [];
    let disagree = 0;
    for (const x of ra) {
      const y = byKey.get(x.k);
      if (!y) continue;
      const sx = x.err ? "error" : numeric(scoreOf(x)), sy = y.err ? "error" : numeric(scoreOf(y));
      const differs = sx !== sy;
      if (differs) disagree++;
      if (differs || state.only !== "1") pairs.push({ a: x, b: y, r: x.r, i: x.i });
    }
    compared = pairs;
    $(".count", host).textContent = `${disagree.toLocaleString("en")} disagreements in ${byKey.size && ra.filter((x) => byKey.has(x.k)).length.toLocaleString("en")} shared samples; showing ${pairs.length.toLocaleString("en")}`;
    const cols = [
      { label: "id", w: "80px", cell: (p) => [p.a.id] }, { label: "ep", w: "36px", cell: (p) => [p.a.ep] },
      { label: "A score", w: "70px", cell: (p) => scoreCell(p.a) }, { label: "B score", w: "70px", cell: (p) => scoreCell(p.b) },
      { label: "input", w: "minmax(160px,2fr)", cell: (p) => [p.a.in] },
      { label: "A output", w: "minmax(160px,2fr)", cell: (p) => [p.a.err || p.a.out] },
      { label: "B output", w: "minmax(160px,2fr)", cell: (p) => [p.b.err || p.b.out] },
    ];
    virtualTable(document.getElementById("ctable"), cols, pairs, (p) => openPair(p));
  }
  async function openPair(p) {
    state.open = p.a.r + ":" + p.a.i;
    writeHash();
    const [da, db] = await Promise.all([detail(p.a.r, p.a.i), detail(p.b.r, p.b.i)]);
    const drawer = document.getElementById("drawer");
    drawer.innerHTML = `<div class="bar"><h3>sample ${esc(da.id)} · epoch ${esc(da.ep)}: A vs B</h3>
      <button data-act="prev" title="k">↑</button><button data-act="next" title="j">↓</button><button data-act="close" title="Esc">close</button></div><div class="cols"><div>${transcriptHTML(p.a.r, da)}</div><div>${transcriptHTML(p.b.r, db)}</div></div>`;
    drawer.hidden = false;
  }

  // ---- events
  document.addEventListener("change", (ev) => {
    const el = ev.target;
    if (el.dataset.f && el.tagName === "SELECT") {
      state[el.dataset.f] = el.value;
      if (el.dataset.f === "scorer") state.score = "";
      writeHash();
      samplesTab();
    } else if (el.dataset.c) {
      state[el.dataset.c] = el.type === "checkbox" ? (el.checked ? "1" : "0") : el.value;
      writeHash();
      compareTab();
    }
  });
  let typing = 0;
  document.addEventListener("input", (ev) => {
    const el = ev.target;
    if (!el.dataset.f || el.tagName !== "INPUT") return;
    state[el.dataset.f] = el.value;
    clearTimeout(typing);
    typing = setTimeout(() => { writeHash(); samplesTab(); }, 150);
  });
  document.addEventListener("click", (ev) => {
    const tab = ev.target.closest("nav button");
    if (tab) { show(tab.dataset.tab); return; }
    const act = ev.target.closest("#drawer [data-act]");
    if (act) {
      const [r, i] = state.open.split(":").map(Number);
      if (act.dataset.act === "close") closeSample();
      else if (act.dataset.act === "side") openSample(r, i, state.side !== "1");
      else step(act.dataset.act === "next" ? 1 : -1);
      return;
    }
    const row = ev.target.closest("#overview tr[data-run]");
    if (row) {
      Object.assign(state, { run: row.dataset.run, status: row.dataset.error ? "error" : "all", score: "", meta: "", q: row.dataset.error || "" });
      for (const el of document.querySelectorAll("#samples [data-f]")) el.value = state[el.dataset.f];
      show("samples");
    }
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    if (ev.key === "Escape" && state.open) closeSample();
    else if ((ev.key === "j" || ev.key === "ArrowDown") && state.open) { ev.preventDefault(); step(1); }
    else if ((ev.key === "k" || ev.key === "ArrowUp") && state.open) { ev.preventDefault(); step(-1); }
  });

  // ---- live: `gauge view --serve` reloads the page (the hash keeps the view) when runs
  // write; while a transcript is open it offers the reload instead of pulling the page away.
  if (META.live) {
    setInterval(() => {
      fetch("version", { cache: "no-store" }).then((res) => res.text()).then((version) => {
        if (!version || version === META.live) return;
        if (!state.open) { location.reload(); return; }
        if (!$("#reload")) {
          $("header .sub").insertAdjacentHTML("afterend", '<button id="reload">runs changed: reload</button>');
          $("#reload").addEventListener("click", () => location.reload());
        }
      }).catch(() => {});
    }, 2000);
  }

  readHash();
  const ready = show(state.tab).then(() => {
    if (state.open) {
      const [r, i] = state.open.split(":").map(Number);
      if (RUNS[r]) return openSample(r, i);
    }
    return null;
  });
  ready.then(() => { document.body.dataset.ready = "1"; });
})();
