"""The course website's timed mock interview (``mock-interview.html``, built by :mod:`llmprep.book`); the
terminal's is :mod:`llmprep.coach.mock`.

The page already lists every interview question as a ``<details class="mock-q">`` block; this adds a session
on top of it, in the browser only: choose chapters, a number of questions and the seconds per question (default
120); each question is shown with a visible countdown, the answer is revealed on a click or when the time is
up, the learner rates it 1-4, and a summary ends the session. Ratings and sessions are kept in the browser's
``localStorage`` (key ``llmprep-mock-v1``) and shown on the next visit: a line on the last session and, on
every question rated before, its last rating. No network, no library.
"""
from __future__ import annotations

import html

STORAGE_KEY = "llmprep-mock-v1"


def session_block(chapters: list[str], titles: dict[str, str]) -> str:
    """The page's session controls (raw HTML inside the MyST page)."""
    boxes = " ".join(
        f'<label class="mock-ch"><input type="checkbox" class="mock-session-chapter" value="{html.escape(c)}" '
        f'checked> {html.escape(c.split("_")[0])}</label>' for c in chapters)
    del titles
    return "\n".join([
        '<div id="mock-session" class="mock-session">',
        '<div id="mock-setup">',
        "<p><b>Timed session / 计时模拟</b>: questions drawn from the chapters ticked below, a timer per question, "
        "the model answer after it, your own rating, and a summary. Ratings stay in this browser "
        "(localStorage), nothing is sent anywhere. 评分只保存在本浏览器。</p>",
        f'<div class="mock-ch-list">{boxes}</div>',
        '<label for="mock-n">Questions / 题数</label> <input id="mock-n" type="number" min="1" value="5"> ',
        '<label for="mock-seconds">Seconds each / 每题秒数</label> '
        '<input id="mock-seconds" type="number" min="5" value="120"> ',
        '<button type="button" id="mock-start">Start / 开始</button>',
        "</div>",
        '<div id="mock-history"></div>',
        '<div id="mock-stage" hidden>',
        '<div class="mock-stage-head"><span id="mock-progress"></span> '
        '<span id="mock-timer" class="mock-timer"></span></div>',
        '<div id="mock-question" class="mock-question"></div>',
        '<button type="button" id="mock-reveal">Reveal the answer / 看答案</button>',
        '<div id="mock-answer-box" hidden></div>',
        '<div id="mock-rate" hidden>Rate your answer / 自评: '
        + " ".join(f'<button type="button" class="mock-rate" data-rating="{k}">{k} {name}</button>'
                   for k, name in ((1, "Again / 不会"), (2, "Hard / 勉强"), (3, "Good / 会"), (4, "Easy / 熟练")))
        + "</div>",
        "</div>",
        '<div id="mock-summary" hidden></div>',
        "</div>", ""])


CSS = """
/* mock interview: the timed session */
.mock-session { border: 1px solid var(--pst-color-border, #ccc); border-radius: 6px; padding: .6em 1em; margin: 1em 0; }
.mock-session input[type=number] { width: 5em; }
.mock-ch-list { display: flex; flex-wrap: wrap; gap: .2em .8em; margin: .4em 0; }
.mock-stage-head { display: flex; justify-content: space-between; font-weight: 600; }
.mock-timer { font-variant-numeric: tabular-nums; font-size: 1.3em; }
.mock-timer.mock-late { color: #cf222e; }
.mock-question { font-size: 1.15em; font-weight: 600; margin: .6em 0; }
#mock-answer-box { border-left: 3px solid var(--pst-color-primary, #4a8); padding-left: .8em; margin: .8em 0; }
#mock-rate button, #mock-start, #mock-reveal { margin: .2em .3em .2em 0; }
.mock-last { font-weight: 400; font-size: .85em; margin-left: .6em; opacity: .8; }
table.mock-summary-table td, table.mock-summary-table th { padding: .1em .6em; text-align: left; }
"""

JS = """// llmprep website: the timed mock-interview session (no network, no library); ratings in localStorage.
document.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("mock-session");
  if (!root) return;
  var KEY = "@@KEY@@";
  var NAMES = {1: "Again", 2: "Hard", 3: "Good", 4: "Easy"};
  function $(id) { return document.getElementById(id); }
  function load() {
    try { var data = JSON.parse(localStorage.getItem(KEY) || "{}"); }
    catch (e) { data = {}; }
    if (!data || typeof data !== "object") data = {};
    data.ratings = data.ratings || {};
    data.sessions = data.sessions || [];
    return data;
  }
  function save(data) {
    try { localStorage.setItem(KEY, JSON.stringify(data)); } catch (e) { /* private mode: the session still runs */ }
  }
  function questions() { return Array.prototype.slice.call(document.querySelectorAll("details.mock-q")); }
  function titleOf(q) { return q.querySelector("summary").cloneNode(true); }
  function fmt(s) { s = Math.max(0, Math.ceil(s)); return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2); }

  function showHistory() {
    var data = load();
    questions().forEach(function (q) {
      var old = q.querySelector(".mock-last");
      if (old) old.remove();
      var list = data.ratings[q.id];
      if (!list || !list.length) return;
      var last = list[list.length - 1];
      var span = document.createElement("span");
      span.className = "mock-last";
      span.textContent = "last rating / 上次自评: " + NAMES[last.rating] + " (" + last.at.slice(0, 10) + ")";
      q.querySelector("summary").appendChild(span);
    });
    var box = $("mock-history");
    box.textContent = "";
    if (!data.sessions.length) return;
    var s = data.sessions[data.sessions.length - 1];
    box.textContent = "Last session / 上次模拟 (" + s.at.slice(0, 16).replace("T", " ") + "): " + s.answered +
      " question(s), mean rating " + s.mean.toFixed(1) + " of 4, " + s.over + " over time; " +
      data.sessions.length + " session(s) in this browser.";
  }

  var state = null;
  function tick() {
    if (!state || state.revealed) return;
    var left = state.seconds - (Date.now() - state.start) / 1000;
    var timer = $("mock-timer");
    timer.textContent = left > 0 ? "time left / 剩余 " + fmt(left) : "time is up / 时间到";
    timer.classList.toggle("mock-late", left <= 10);
    if (left <= 0) reveal(true);
  }
  function ask() {
    var q = state.picked[state.index];
    $("mock-progress").textContent = "Question " + (state.index + 1) + " / " + state.picked.length;
    var box = $("mock-question");
    box.textContent = "";
    box.appendChild(titleOf(q));
    var last = box.querySelector(".mock-last");
    if (last) last.remove();
    $("mock-answer-box").hidden = true;
    $("mock-answer-box").textContent = "";
    $("mock-rate").hidden = true;
    $("mock-reveal").hidden = false;
    state.start = Date.now();
    state.revealed = false;
    tick();
    if (window.MathJax && MathJax.typesetPromise) MathJax.typesetPromise([box]);
  }
  function reveal(timedOut) {
    if (state.revealed) return;
    state.revealed = true;
    state.took = Math.min((Date.now() - state.start) / 1000, timedOut ? state.seconds : Infinity);
    state.over = !!timedOut || state.took > state.seconds;
    $("mock-timer").textContent = (timedOut ? "time is up / 时间到" : fmt(state.took) + " used / 用时") +
      " (limit " + fmt(state.seconds) + ")";
    var q = state.picked[state.index];
    var box = $("mock-answer-box");
    box.textContent = "";
    box.appendChild(q.querySelector(".mock-answer").cloneNode(true));
    box.hidden = false;
    $("mock-reveal").hidden = true;
    $("mock-rate").hidden = false;
  }
  function rate(rating) {
    var q = state.picked[state.index];
    var entry = {rating: rating, seconds: Math.round(state.took), over: state.over, at: new Date().toISOString()};
    var data = load();
    (data.ratings[q.id] = data.ratings[q.id] || []).push(entry);
    save(data);
    state.done.push({q: q, entry: entry});
    state.index += 1;
    if (state.index < state.picked.length) ask(); else finish();
  }
  function finish() {
    clearInterval(state.timer);
    $("mock-stage").hidden = true;
    $("mock-setup").hidden = false;
    var done = state.done;
    var mean = done.reduce(function (a, d) { return a + d.entry.rating; }, 0) / done.length;
    var over = done.filter(function (d) { return d.entry.over; }).length;
    var data = load();
    data.sessions.push({at: new Date().toISOString(), answered: done.length, mean: mean, over: over,
                        questions: done.map(function (d) { return d.q.id; })});
    save(data);
    var box = $("mock-summary");
    box.textContent = "";
    var head = document.createElement("p");
    head.innerHTML = "<b>Summary / 小结</b>: ";
    head.appendChild(document.createTextNode(done.length + " question(s), mean rating " + mean.toFixed(1) +
      " of 4, " + over + " over time. Questions rated Again or Hard are worth another look."));
    box.appendChild(head);
    var table = document.createElement("table");
    table.className = "mock-summary-table";
    table.innerHTML = "<tr><th>question</th><th>time</th><th>rating</th></tr>";
    done.forEach(function (d) {
      var tr = document.createElement("tr");
      var a = document.createElement("a");
      a.href = "#" + d.q.id;
      var title = titleOf(d.q);
      var mark = title.querySelector(".mock-last");
      if (mark) mark.remove();
      a.textContent = title.textContent.trim() || d.q.id;
      var cells = [a, document.createTextNode(fmt(d.entry.seconds) + (d.entry.over ? " (over)" : "")),
                   document.createTextNode(NAMES[d.entry.rating])];
      cells.forEach(function (c) { var td = document.createElement("td"); td.appendChild(c); tr.appendChild(td); });
      table.appendChild(tr);
    });
    box.appendChild(table);
    box.hidden = false;
    state = null;
    showHistory();
  }
  $("mock-start").addEventListener("click", function () {
    var chosen = Array.prototype.slice.call(document.querySelectorAll(".mock-session-chapter:checked"))
      .map(function (c) { return c.value; });
    var pool = questions().filter(function (q) { return chosen.indexOf(q.dataset.chapter) >= 0; });
    var box = $("mock-history");
    if (!pool.length) { box.textContent = "Tick at least one chapter / 请至少选一章."; return; }
    var n = Math.max(1, parseInt($("mock-n").value, 10) || 5);
    var seconds = Math.max(1, parseFloat($("mock-seconds").value) || 120);
    for (var i = pool.length - 1; i > 0; i--) {  // Fisher-Yates shuffle
      var j = Math.floor(Math.random() * (i + 1)), t = pool[i];
      pool[i] = pool[j];
      pool[j] = t;
    }
    state = {picked: pool.slice(0, n), index: 0, seconds: seconds, done: []};
    $("mock-summary").hidden = true;
    $("mock-setup").hidden = true;
    $("mock-stage").hidden = false;
    state.timer = setInterval(tick, 250);
    ask();
  });
  $("mock-reveal").addEventListener("click", function () { reveal(false); });
  Array.prototype.forEach.call(document.querySelectorAll("button.mock-rate"), function (b) {
    b.addEventListener("click", function () { if (state && state.revealed) rate(parseInt(b.dataset.rating, 10)); });
  });
  showHistory();
});
""".replace("@@KEY@@", STORAGE_KEY)
