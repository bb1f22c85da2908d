"""The page at `/`: English on the left, every language the model has on the right, and what the model saw.

Design: one HTML document with its CSS and JavaScript inline (no external
assets, so it works offline and behind any proxy). It asks /health once for
the languages, the limits, whether keys are required and whether the model
draws pictures, then builds one pane per language. Typing starts a "round"
after a short pause: one POST /translate per language, POST /represent (the
strip of d_model coloured cells and the dot on the 2-D map) and POST /draw
(the picture, enlarged with crisp pixels). A newer round aborts the older
one's requests (AbortController), so stale answers never overwrite fresh
ones. Every text from the user or the server is inserted with textContent;
the map is SVG built with createElementNS. The results region is aria-busy
while a round runs, and the error line is a live alert naming what went
wrong (limits, keys, rate limits, an overloaded server).
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastnet translator</title>
<style>
  :root {
    --ink: #1d2230; --muted: #5b6275; --line: #d9dde7; --paper: #ffffff; --wash: #f4f6fa;
    --accent: #2f5bd3; --accent-ink: #ffffff; --bad: #b3261e; --bad-wash: #fdecea; --dot: #e4572e;
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--ink); background: var(--wash); }
  .wrap { max-width: 72rem; margin: 0 auto; padding: 1rem; }
  header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: .5rem 1rem; }
  h1 { font-size: 1.5rem; margin: .25rem 0; }
  h2 { font-size: 1rem; margin: 0 0 .4rem; }
  .tagline { margin: 0 0 1rem; color: var(--muted); }
  .sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
  button, input, textarea { font: inherit; color: inherit; }
  button { border: 1px solid var(--line); background: var(--paper); border-radius: .4rem; padding: .35rem .8rem;
           cursor: pointer; }
  button:hover:not(:disabled) { border-color: var(--accent); }
  button:disabled { opacity: .5; cursor: default; }
  button.primary { background: var(--accent); color: var(--accent-ink); border-color: var(--accent); }
  :focus-visible { outline: 3px solid #f2b600; outline-offset: 2px; }
  kbd { font: .75em ui-monospace, monospace; border: 1px solid currentColor; border-radius: .25rem;
        padding: 0 .25rem; opacity: .8; }
  details.key { background: var(--paper); border: 1px solid var(--line); border-radius: .5rem; padding: .3rem .7rem; }
  details.key summary { cursor: pointer; color: var(--muted); }
  details.key .row { margin: .4rem 0; }
  details.key input { padding: .3rem .5rem; border: 1px solid var(--line); border-radius: .4rem; min-width: 12rem; }
  .panes { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 2fr); gap: 1rem; }
  .targets { display: grid; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); gap: 1rem; }
  .pane { background: var(--paper); border: 1px solid var(--line); border-radius: .6rem; padding: .8rem 1rem;
          display: flex; flex-direction: column; gap: .5rem; min-width: 0; }
  .pane label.title { font-weight: 600; }
  textarea { width: 100%; min-height: 7.5rem; resize: vertical; padding: .5rem .6rem; font-size: 1.15rem;
             border: 1px solid var(--line); border-radius: .4rem; }
  .row { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; }
  .row .grow { flex: 1; }
  .counter { color: var(--muted); font-variant-numeric: tabular-nums; font-size: .9rem; }
  .counter.over { color: var(--bad); font-weight: 600; }
  .live { font-size: .9rem; color: var(--muted); }
  .notice { margin: 0; font-size: .9rem; color: #7a4b00; }
  .notice:empty { display: none; }
  .translation { display: block; min-height: 3.2rem; font-size: 1.25rem; overflow-wrap: anywhere; }
  .translation:empty::before { content: attr(data-empty); color: #9aa0b0; }
  .alternatives { margin: 0; padding-left: 1.4rem; color: var(--muted); }
  #error { margin: .5rem 0 0; }
  #error:not(:empty) { background: var(--bad-wash); color: var(--bad); border: 1px solid #f3c1bd;
                       border-radius: .5rem; padding: .5rem .8rem; }
  #status { color: var(--muted); font-size: .9rem; min-height: 1.4rem; margin: .25rem 0; }
  .insight { display: grid; grid-template-columns: minmax(0, 1.1fr) minmax(0, 1.4fr) minmax(0, .9fr); gap: 1rem; }
  figure { margin: 0; background: var(--paper); border: 1px solid var(--line); border-radius: .6rem;
           padding: .8rem 1rem; min-width: 0; }
  figcaption { font-weight: 600; margin-bottom: .5rem; }
  figure p.note { color: var(--muted); font-size: .85rem; margin: .5rem 0 0; }
  #strip { display: flex; flex-wrap: wrap; gap: 1px; min-height: 2.4rem; }
  #strip .cell { flex: 1 0 3px; height: 2.4rem; }
  .legend { display: flex; align-items: center; gap: .4rem; font-size: .8rem; color: var(--muted); margin-top: .4rem; }
  .legend .bar { flex: 1; height: .5rem; border-radius: .25rem;
                 background: linear-gradient(90deg, rgb(33,102,172), rgb(247,247,247), rgb(178,24,43)); }
  #map { width: 100%; height: auto; display: block; background: var(--wash); border-radius: .4rem; }
  #map .ref { fill: #8c93a6; }
  #map .ref-label { fill: #5b6275; font-size: 9px; }
  #map .here { fill: var(--dot); stroke: #ffffff; stroke-width: 2; }
  #map .here-label { fill: var(--ink); font-size: 12px; font-weight: 700; paint-order: stroke;
                     stroke: var(--wash); stroke-width: 3px; }
  #map .halo { fill: none; stroke: var(--dot); stroke-width: 1.5; opacity: .5; }
  #picture-frame { display: flex; justify-content: center; }
  #picture { width: 100%; max-width: 16rem; aspect-ratio: 1; image-rendering: pixelated; border: 1px solid var(--line); }
  #picture:not([data-ready]) { visibility: hidden; }
  footer { color: var(--muted); font-size: .85rem; margin-top: 1rem; }
  @media (max-width: 60rem) {
    .panes { grid-template-columns: minmax(0, 1fr); }
    .insight { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
    #map-box { grid-column: 1 / -1; grid-row: 1; }
  }
  @media (max-width: 34rem) {
    .wrap { padding: .6rem; }
    .insight { grid-template-columns: minmax(0, 1fr); }
    #map-box { grid-row: auto; }
    .translation { font-size: 1.15rem; min-height: 2.2rem; }
  }
</style>
</head>
<body>
<div class="wrap">
<header>
  <h1>fastnet translator</h1>
  <details class="key" id="key-box">
    <summary>API key<span id="key-state"></span></summary>
    <div class="row">
      <label for="api-key">API key</label>
      <input id="api-key" type="password" autocomplete="off" spellcheck="false" aria-describedby="key-status">
      <button id="key-save" type="button">Save</button>
      <button id="key-forget" type="button">Forget</button>
    </div>
    <div id="key-status" class="counter" aria-live="polite"></div>
  </details>
</header>
<p class="tagline">One encoder reads the English sentence; a Swedish decoder, a Spanish decoder and a pixel
  decoder all read the same representation of it.</p>

<main>
  <section class="panes" aria-label="Translation">
    <div class="pane">
      <label class="title" for="source">English</label>
      <textarea id="source" placeholder="Type English here, e.g. cats are cute" spellcheck="false"
                aria-describedby="counter hint"></textarea>
      <div class="row">
        <span id="counter" class="counter grow">0 characters</span>
        <label class="live"><input type="checkbox" id="live" checked> Translate as you type</label>
      </div>
      <div class="row">
        <button id="translate" class="primary" type="button" disabled>Translate <kbd>Ctrl+Enter</kbd></button>
        <button id="clear" type="button">Clear</button>
      </div>
      <p id="notice" class="notice" aria-live="polite"></p>
      <p id="hint" class="sr-only">Translations appear as you type. Ctrl+Enter translates at once.</p>
    </div>
    <div class="targets" id="targets"></div>
  </section>

  <div id="error" role="alert"></div>
  <div id="status" aria-live="polite"></div>

  <section id="results" class="insight" aria-label="What the model makes of the sentence" aria-busy="false">
    <figure id="strip-box">
      <figcaption>The representation</figcaption>
      <div id="strip" role="img" aria-label="No sentence yet"></div>
      <div class="legend" aria-hidden="true"><span>negative</span><span class="bar"></span><span>positive</span></div>
      <p class="note" id="strip-note">The encoder turns the sentence into one vector; every cell is one of
        its numbers. Every decoder reads these numbers.</p>
    </figure>
    <figure id="map-box">
      <figcaption>Where it sits among other sentences</figcaption>
      <svg id="map" viewBox="0 0 480 300" role="img" aria-labelledby="map-title">
        <title id="map-title">Map of sentence representations</title>
      </svg>
      <p class="note" id="map-note">Each grey dot is a reference sentence, placed by the two main directions
        (PCA) of their representations. Similar sentences sit close together.</p>
    </figure>
    <figure id="picture-box">
      <figcaption>The picture it draws</figcaption>
      <div id="picture-frame"><img id="picture" alt="" width="256" height="256"></div>
      <p class="note" id="picture-note">The pixel decoder paints from the same numbers.</p>
    </figure>
  </section>
</main>
<footer>Served by fastnet. Keyboard: Tab moves between controls, Ctrl+Enter translates.</footer>
</div>
<script>
"use strict";
const NAMES = {sv: "Swedish", es: "Spanish", de: "German", fr: "French", it: "Italian", pt: "Portuguese",
               nl: "Dutch", da: "Danish", no: "Norwegian", fi: "Finnish", en: "English"};
const KEY_STORE = "fastnet.apiKey";
const DEBOUNCE_MS = 150;
const $ = (id) => document.getElementById(id);
const source = $("source"), counter = $("counter"), live = $("live"), button = $("translate");
const errorBox = $("error"), statusBox = $("status"), results = $("results");
const strip = $("strip"), map = $("map"), picture = $("picture");
const keyInput = $("api-key"), keyBox = $("key-box"), keyStatus = $("key-status");

const state = {languages: [], limits: {}, hasPictures: false, keysRequired: false, canAlternatives: false,
               panes: {}, round: 0, controller: null, timer: null, pictureUrl: null, shown: "", reference: null,
               limitShown: false, drawnMap: null};

// ---------------------------------------------------------------- API key (kept in localStorage)
function storedKey() { try { return localStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; } }
function saveKey(value) {
  try {
    if (value) { localStorage.setItem(KEY_STORE, value); } else { localStorage.removeItem(KEY_STORE); }
  } catch (e) { keyStatus.textContent = "This browser does not keep the key (storage is blocked)."; return; }
  keyStatus.textContent = value ? "Key saved in this browser." : "No key saved.";
  showKeyState();
}
function showKeyState() { $("key-state").textContent = storedKey() ? " (saved)" : ""; }
function headers() {
  const h = {"Content-Type": "application/json"};
  const key = storedKey();
  if (key) { h["X-API-Key"] = key; }
  return h;
}

// ---------------------------------------------------------------- errors, in words a person can act on
class ServiceError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.message) || ("HTTP " + status));
    this.status = status; this.code = body && body.error; this.body = body || {}; this.retryAfter = retryAfter;
  }
}
function seconds(n) { return n === 1 ? "1 second" : n + " seconds"; }
function describe(err) {
  if (!(err instanceof ServiceError)) { return "The server did not answer (" + err.message + "). Is it still running?"; }
  const wait = err.retryAfter ? " Try again in " + seconds(err.retryAfter) + "." : " Try again shortly.";
  switch (err.code) {
    case "unauthorized":
      return (storedKey() ? "The server did not accept this API key." : "This server needs an API key.") +
             " Enter a valid key under \u201cAPI key\u201d at the top.";
    case "rate_limited": return "Too many requests or characters for this key right now." + wait;
    case "overloaded": return "The server is busy." + wait;
    case "deadline_exceeded": return "The server could not answer in time." + wait;
    case "text_too_long":
      return "The text has " + source.value.length + " characters; this server takes at most " + err.body.limit +
             " (the limit). Shorten it to translate.";
    case "untranslatable": return "The model cannot take this sentence: " + err.message;
    case "no_pictures": return "";
    default: break;
  }
  if (err.status === 401) { return "This server needs a valid API key. Enter it under \u201cAPI key\u201d at the top."; }
  if (err.status === 429) { return "Too many requests right now." + wait; }
  if (err.status === 503) { return "The service is unavailable." + wait; }
  return err.message;
}
function showError(text) {
  if (errorBox.textContent !== text) { errorBox.textContent = text; }  // unchanged text is not re-announced
}

async function call(path, payload, signal) {
  const reply = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(payload), signal});
  if (reply.ok) { return reply; }
  let body = null;
  try { body = await reply.json(); } catch (e) { body = null; }
  const header = parseInt(reply.headers.get("Retry-After") || "", 10);
  const retryAfter = Number.isFinite(header) ? header : (body && body.retry_after);
  throw new ServiceError(reply.status, body, retryAfter ? Math.ceil(retryAfter) : null);
}

// ---------------------------------------------------------------- the language panes
function languageName(code) { return NAMES[code] || code; }
function buildPane(code) {
  const name = languageName(code);
  const pane = document.createElement("section");
  pane.className = "pane target";
  pane.setAttribute("aria-labelledby", "name-" + code);
  const title = document.createElement("h2");
  title.id = "name-" + code;
  title.textContent = name;
  const output = document.createElement("output");
  output.id = "out-" + code;
  output.className = "translation";
  output.lang = code;
  output.setAttribute("aria-live", "polite");
  output.setAttribute("aria-labelledby", "name-" + code);
  output.dataset.empty = "\u2026";
  const row = document.createElement("div");
  row.className = "row";
  const copy = document.createElement("button");
  copy.type = "button"; copy.id = "copy-" + code; copy.className = "copy"; copy.disabled = true;
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy the " + name + " translation");
  copy.addEventListener("click", () => copyText(code));
  row.appendChild(copy);
  const alternatives = document.createElement("ol");
  alternatives.className = "alternatives"; alternatives.id = "alt-" + code; alternatives.hidden = true;
  alternatives.setAttribute("aria-label", "Other " + name + " translations");
  let more = null;
  if (state.canAlternatives) {  // the server answers n_best > 1: alternatives on demand
    more = document.createElement("button");
    more.type = "button"; more.id = "more-" + code; more.disabled = true;
    more.textContent = "Alternatives";
    more.setAttribute("aria-label", "Show other " + name + " translations");
    more.addEventListener("click", () => showAlternatives(code));
    row.appendChild(more);
  }
  pane.append(title, output, row, alternatives);
  $("targets").appendChild(pane);
  state.panes[code] = {output, copy, more, alternatives, text: ""};
}
function setTranslation(code, text) {
  const pane = state.panes[code];
  pane.text = text;
  pane.output.textContent = text;
  pane.copy.disabled = !text;
  if (pane.more) { pane.more.disabled = !text; }
  pane.alternatives.hidden = true;
  pane.alternatives.replaceChildren();
}

async function copyText(code) {
  const pane = state.panes[code];
  if (!pane.text) { return; }
  let done = false;
  try {
    if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(pane.text); done = true; }
  } catch (e) { done = false; }
  if (!done) {  // older browsers, or a page served over plain HTTP on another host
    const scratch = document.createElement("textarea");
    scratch.value = pane.text; scratch.setAttribute("readonly", ""); scratch.className = "sr-only";
    document.body.appendChild(scratch); scratch.select();
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    scratch.remove();
  }
  statusBox.textContent = done ? languageName(code) + " translation copied." : "Copying is blocked in this browser.";
  pane.copy.textContent = done ? "Copied" : "Copy";
  setTimeout(() => { pane.copy.textContent = "Copy"; }, 1500);
}

async function showAlternatives(code) {
  const pane = state.panes[code];
  const text = state.shown;
  if (!text) { return; }
  const n = Math.min(3, state.limits.max_n_best, state.limits.max_beam);  // both > 1, or no button
  pane.more.disabled = true;
  try {
    const reply = await call("translate", {texts: [text], to: code, beam: n, n_best: n});
    const data = await reply.json();
    if (state.shown !== text) { return; }
    pane.alternatives.replaceChildren();
    for (const option of (data.alternatives && data.alternatives[0]) || []) {
      const item = document.createElement("li");
      item.textContent = option;
      pane.alternatives.appendChild(item);
    }
    pane.alternatives.hidden = pane.alternatives.children.length === 0;
    statusBox.textContent = pane.alternatives.children.length + " " + languageName(code) + " translations shown.";
  } catch (err) {
    showError(describe(err));
  } finally {
    pane.more.disabled = !pane.text;
  }
}

function showUnknown(words) {
  const quoted = words.map((w) => "\u201c" + w + "\u201d").join(", ");
  $("notice").textContent = words.length === 0 ? "" : "The model does not know " + quoted + ": it reads " +
    (words.length === 1 ? "it" : "each") + " as one unknown word, so the translations may leave " +
    (words.length === 1 ? "it" : "them") + " out or show <unk>.";
}

// ---------------------------------------------------------------- the representation: strip and map
function colour(v, scale) {
  const t = Math.max(-1, Math.min(1, v / scale));
  const ends = t < 0 ? [33, 102, 172] : [178, 24, 43];  // blue below zero, red above, white at zero
  const a = Math.abs(t);
  const mix = (end) => Math.round(247 + (end - 247) * a);
  return "rgb(" + mix(ends[0]) + "," + mix(ends[1]) + "," + mix(ends[2]) + ")";
}
function drawStrip(vector, scale) {
  const cells = [];
  vector.forEach((v, i) => {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.style.background = colour(v, scale);
    cell.title = "number " + (i + 1) + ": " + v.toFixed(3);
    cells.push(cell);
  });
  strip.replaceChildren(...cells);
  const low = Math.min(...vector), high = Math.max(...vector);
  strip.setAttribute("aria-label", vector.length + " numbers, from " + low.toFixed(2) + " to " + high.toFixed(2));
  $("strip-note").textContent = "The encoder turns the sentence into " + vector.length +
    " numbers; each cell is one of them (blue below zero, red above). Every decoder reads these numbers.";
}
function svg(tag, attributes, text) {
  const node = document.createElementNS(map.namespaceURI, tag);
  for (const [k, v] of Object.entries(attributes)) { node.setAttribute(k, v); }
  if (text !== undefined) { node.textContent = text; }
  return node;
}
function overlaps(a, b) { return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1; }
function placeLabel(taken, x, y, text, size, W, H, always) {
  // Right of the dot, else left, above, below: the first spot that hits no dot or label. Without a free
  // spot a reference label is left out (its dot keeps a tooltip); the typed sentence's label (always) is
  // put in the first spot inside the map, and the reference labels keep clear of it.
  const w = text.length * size * 0.5, h = size;  // about the width of the sans-serif text
  let fallback = null;
  for (const [dx, dy] of [[8, h / 3], [-8 - w, h / 3], [-w / 2, -9], [-w / 2, h + 8]]) {
    const box = {x0: x + dx, y0: y + dy - h, x1: x + dx + w, y1: y + dy + 2};
    if (box.x0 < 1 || box.x1 > W - 1 || box.y0 < 1 || box.y1 > H - 1) { continue; }
    fallback = fallback || box;
    if (taken.some((t) => overlaps(t, box))) { continue; }
    taken.push(box);
    return {x: box.x0, y: box.y1 - 2};
  }
  if (!always) { return null; }
  const box = fallback || {x0: Math.max(1, Math.min(x + 8, W - w - 1)), y0: Math.max(1, y - h), x1: 0, y1: 0};
  box.x1 = box.x0 + w; box.y1 = box.y0 + h + 2;
  taken.push(box);
  return {x: box.x0, y: box.y1 - 2};
}
function drawMap(reference, point, sentence) {
  // The drawing is as many units wide as the map is pixels wide, so labels keep a readable size on a phone
  // (fewer of them fit there; the rest keep their tooltips).
  state.drawnMap = [reference, point, sentence];
  const W = Math.max(240, Math.round(map.getBoundingClientRect().width) || 480), H = Math.round(Math.min(W * 0.62, 320));
  const pad = 16;
  map.setAttribute("viewBox", "0 0 " + W + " " + H);
  const all = reference.map.concat(point ? [point] : []);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => pad + (W - 2 * pad) * (x - x0) / ((x1 - x0) || 1);
  const sy = (y) => H - pad - (H - 2 * pad) * (y - y0) / ((y1 - y0) || 1);
  const dots = reference.map.map((p) => [sx(p[0]), sy(p[1])]);
  const here = point ? [sx(point[0]), sy(point[1])] : null;
  const taken = dots.concat(here ? [here] : []).map(([x, y]) => ({x0: x - 5, y0: y - 5, x1: x + 5, y1: y + 5}));
  const nodes = [svg("title", {id: "map-title"}, sentence ? "Map: \u201c" + sentence + "\u201d among reference sentences"
                                                         : "Map of reference sentences")];
  const hereLabel = here ? placeLabel(taken, here[0], here[1], sentence, 12, W, H, true) : null;
  reference.texts.forEach((text, i) => {
    const dot = svg("circle", {cx: dots[i][0], cy: dots[i][1], r: 4, class: "ref"});
    dot.appendChild(svg("title", {}, text));
    nodes.push(dot);
    const spot = placeLabel(taken, dots[i][0], dots[i][1], text, 9, W, H);
    if (spot) { nodes.push(svg("text", {x: spot.x, y: spot.y, class: "ref-label"}, text)); }
  });
  if (here) {
    nodes.push(svg("circle", {cx: here[0], cy: here[1], r: 11, class: "halo"}));
    const dot = svg("circle", {cx: here[0], cy: here[1], r: 6.5, class: "here", id: "map-here"});
    dot.appendChild(svg("title", {}, sentence));
    nodes.push(dot, svg("text", {x: hereLabel.x, y: hereLabel.y, class: "here-label", id: "map-here-label"}, sentence));
    let best = 0, bestDistance = Infinity;
    reference.map.forEach((p, i) => {
      const d = Math.hypot(p[0] - point[0], p[1] - point[1]);
      if (d < bestDistance) { best = i; bestDistance = d; }
    });
    $("map-note").textContent = "The orange dot is your sentence; the grey dots are reference sentences, placed by " +
      "the two main directions (PCA) of their representations. Nearest: \u201c" + reference.texts[best] + "\u201d.";
  }
  map.replaceChildren(...nodes);
}

// ---------------------------------------------------------------- the picture
function showPicture(blob, sentence) {
  // Resolves once the browser has decoded the picture, so a finished round means it is on screen.
  return new Promise((resolve, reject) => {
    const previous = state.pictureUrl;
    state.pictureUrl = URL.createObjectURL(blob);
    picture.onload = () => { picture.dataset.ready = ""; if (previous) { URL.revokeObjectURL(previous); } resolve(); };
    picture.onerror = () => reject(new Error("the picture could not be shown"));
    picture.alt = "A picture the pixel decoder drew from \u201c" + sentence + "\u201d";
    picture.src = state.pictureUrl;
  });
}
function hidePicture() { $("picture-box").hidden = true; state.hasPictures = false; }

// ---------------------------------------------------------------- one round: everything for one text
function updateCounter() {
  const n = source.value.length, limit = state.limits.max_chars;
  counter.textContent = limit ? n + " / " + limit + " characters" : n + (n === 1 ? " character" : " characters");
  counter.classList.toggle("over", Boolean(limit) && n > limit);
  return !limit || n <= limit;
}
function clearResults() {
  for (const code of state.languages) { setTranslation(code, ""); }
  strip.replaceChildren();
  strip.setAttribute("aria-label", "No sentence yet");
  showUnknown([]);
  if (state.reference) { drawMap(state.reference, null, ""); }
  delete picture.dataset.ready;
  picture.alt = "";
  state.shown = "";
}
function newRound() {
  // A newer round makes the older one's answers stale: cancel its requests, and its late replies are ignored.
  clearTimeout(state.timer);
  if (state.controller) { state.controller.abort(); }
  state.controller = new AbortController();
  return ++state.round;
}
function overLimit() {
  newRound();
  results.setAttribute("aria-busy", "false");
  state.limitShown = true;
  showError("The text has " + source.value.length + " characters; this server takes at most " +
            state.limits.max_chars + " (the limit). Shorten it to translate.");
}
function schedule() {
  clearTimeout(state.timer);
  if (!updateCounter()) { overLimit(); return; }
  if (state.limitShown) { state.limitShown = false; showError(""); }
  if (live.checked) { state.timer = setTimeout(run, DEBOUNCE_MS); }
}
async function run() {
  if (!updateCounter()) { overLimit(); return; }
  const text = source.value.trim();
  const round = newRound();
  if (!text) { clearResults(); showError(""); results.setAttribute("aria-busy", "false"); return; }
  const signal = state.controller.signal;
  results.setAttribute("aria-busy", "true");
  const failures = [];
  const jobs = state.languages.map(async (code) => {
    const data = await (await call("translate", {texts: [text], to: code}, signal)).json();
    if (round === state.round) { setTranslation(code, data.translations[0]); }
  });
  jobs.push((async () => {
    const data = await (await call("represent", {texts: [text]}, signal)).json();
    if (round !== state.round) { return; }
    drawStrip(data.representations[0], (data.reference && data.reference.scale) || 1);
    showUnknown((data.unknown && data.unknown[0]) || []);
    if (data.reference) { state.reference = data.reference; drawMap(data.reference, data.map[0], text); }
    else { $("map-box").hidden = true; }
  })());
  if (state.hasPictures) {
    jobs.push((async () => {
      const blob = await (await call("draw", {text}, signal)).blob();
      if (round === state.round) { await showPicture(blob, text); }
    })());
  }
  const outcomes = await Promise.allSettled(jobs);
  if (round !== state.round) { return; }  // a newer round owns the page now
  for (const outcome of outcomes) {
    if (outcome.status === "rejected" && outcome.reason.name !== "AbortError") { failures.push(outcome.reason); }
  }
  if (failures.some((e) => e.code === "no_pictures")) { hidePicture(); }
  if (failures.some((e) => e.status === 401)) { keyBox.open = true; }
  const tooLong = failures.find((e) => e.code === "text_too_long");
  if (tooLong) { state.limits.max_chars = tooLong.body.limit; updateCounter(); }  // a server older than limits in /health
  const message = failures.map(describe).find((m) => m) || "";
  showError(message);
  state.shown = failures.length ? "" : text;
  results.setAttribute("aria-busy", "false");
  results.dataset.round = String(round);
}

// ---------------------------------------------------------------- start-up
async function start() {
  const info = await (await fetch("health")).json();
  state.languages = info.languages || [];
  state.limits = info.limits || {};
  state.hasPictures = Boolean(info.has_pictures);
  state.keysRequired = Boolean(info.keys_required);
  state.canAlternatives = (state.limits.max_n_best || 1) > 1 && (state.limits.max_beam || 1) > 1;
  for (const code of state.languages) { buildPane(code); }
  if (!state.hasPictures) { $("picture-box").hidden = true; }
  if (state.keysRequired && !storedKey()) {
    keyBox.open = true;
    keyStatus.textContent = "This server needs an API key for every request.";
  }
  button.disabled = state.languages.length === 0;
  updateCounter();
  if (source.value.trim()) { run(); }
  document.body.dataset.ready = "";
}

keyInput.value = storedKey();
showKeyState();
$("key-save").addEventListener("click", () => { saveKey(keyInput.value.trim()); if (source.value.trim()) { run(); } });
$("key-forget").addEventListener("click", () => { keyInput.value = ""; saveKey(""); });
keyInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $("key-save").click(); } });
source.addEventListener("input", schedule);
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (state.drawnMap) { drawMap(...state.drawnMap); } }, 100);
});
source.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
});
button.addEventListener("click", run);
$("clear").addEventListener("click", () => { source.value = ""; updateCounter(); run(); source.focus(); });
start().catch((e) => { showError("Could not reach the server: " + e.message); });
</script>
</body>
</html>
"""
