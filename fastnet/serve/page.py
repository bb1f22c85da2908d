"""The page at `/`: a text box, a language list from /health, a button; plain HTML and JS, no external assets."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastnet translator</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  textarea { width: 100%; font-size: 1.1rem; }
  #translation { font-size: 1.3rem; min-height: 1.5em; padding: .5rem 0; }
  #error { color: #b00020; }
</style>
</head>
<body>
<h1>fastnet translator</h1>
<label for="source">English</label>
<textarea id="source" rows="3" maxlength="500" placeholder="cats are cute"></textarea>
<p>
  <label for="language">into</label>
  <select id="language"></select>
  <button id="translate" type="button" disabled>Translate</button>
</p>
<div id="translation" aria-live="polite"></div>
<div id="error" role="alert"></div>
<script>
"use strict";
const NAMES = {sv: "Swedish", es: "Spanish", de: "German", fr: "French", it: "Italian", pt: "Portuguese"};
const source = document.getElementById("source");
const language = document.getElementById("language");
const button = document.getElementById("translate");
const output = document.getElementById("translation");
const error = document.getElementById("error");

async function loadLanguages() {
  const reply = await fetch("health");
  const info = await reply.json();
  for (const code of info.languages) {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = NAMES[code] ? NAMES[code] + " (" + code + ")" : code;
    language.appendChild(option);
  }
  button.disabled = info.languages.length === 0;
}

async function translate() {
  error.textContent = "";
  output.textContent = "";
  const text = source.value.trim();
  if (!text) { error.textContent = "Type a sentence first."; return; }
  button.disabled = true;
  try {
    const reply = await fetch("translate", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({texts: [text], to: language.value}),
    });
    const data = await reply.json();
    if (reply.ok) { output.textContent = data.translations[0]; }
    else { error.textContent = data.message || ("HTTP " + reply.status); }
  } catch (e) {
    error.textContent = "The server did not answer: " + e;
  } finally {
    button.disabled = false;
  }
}

button.addEventListener("click", translate);
source.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); translate(); } });
loadLanguages().catch((e) => { error.textContent = "Could not load the languages: " + e; });
</script>
</body>
</html>
"""
