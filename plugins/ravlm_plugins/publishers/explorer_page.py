"""explorer.html: each fusion-head system's test items, with what retrieval brought back.

For every (task, system) cell that kept explorer arrays, the first seed's first
:data:`ITEM_CAP` test items: a thumbnail, the text, truth, prediction and confidence, and the
retrieved neighbours (thumbnail, text, label, score). The page filters by outcome, by class,
and by whether the system's answer differs from the baseline's on the same item and seed
(fixed or broke it). A system that measured its retrieval dependence also gets a panel with
that dependence and its interval, its curve (the main metric as a share p of the retrieved
items is replaced by random ones, and with none retrieved: a sparkline and the values) and,
for a knowledge task, its answer-versus-evidence shares; these are the leaderboard's seed
means (``board.tables``), not the first seed's. One self-contained file: the data is one
inline JSON block, thumbnails are small JPEG data URIs kept once per image path, repeated
texts once per string; no string can end or break the block, as `<`, `>`, `&` are escaped;
the script writes every string into the page as text (``textContent``), never as markup. A
cell whose arrays are missing or fail their checksum stops the page with the reader's one-line
``DataError``, as it stops the leaderboard.
"""

from __future__ import annotations

import base64
import html
import io
import math

from ravlm_plugins.publishers._files import GENERATED, write_published
from ravlm_plugins.publishers._markup import inline_json
from ravlm_plugins.publishers.dependence_chart import (
    curve_values,
    dependence_label,
    dependence_rows,
    number_or_none,
)

ITEM_CAP = 200          # test items per (task, system), the first ones of the split
THUMB_PX = 48           # longest side of a thumbnail
THUMB_QUALITY = 70      # JPEG quality of a thumbnail
SIZE_BUDGET_MB = 5.0    # what the page aims to stay under, stated on it


class Tables:
    """The page's shared tables: thumbnails by image path, strings by value."""

    def __init__(self):
        self.thumbs: list[str] = []
        self._thumb_of: dict[str, int] = {}
        self.strings: list[str] = []
        self._string_of: dict[str, int] = {}
        self.unreadable = 0

    def string(self, text: str) -> int:
        text = str(text)
        if text not in self._string_of:
            self._string_of[text] = len(self.strings)
            self.strings.append(text)
        return self._string_of[text]

    def thumb(self, path: str) -> int:
        """The thumbnail's index, or -1 (drawn as a placeholder) without a readable image."""
        if not path:
            return -1
        if path not in self._thumb_of:
            uri = thumbnail_uri(path)
            if uri is None:
                self.unreadable += 1
                self._thumb_of[path] = -1
            else:
                self._thumb_of[path] = len(self.thumbs)
                self.thumbs.append(uri)
        return self._thumb_of[path]


def thumbnail_uri(path: str) -> str | None:
    """A small JPEG of the image as a data URI; None when it cannot be read."""
    from ravlm_bench.api import DEFAULT_MAX_IMAGE_PIXELS, open_image, pillow_bomb_warnings_off

    try:  # the harness's size limit, read from the header (ImageTooLarge is a ValueError)
        with pillow_bomb_warnings_off(), open_image(path, DEFAULT_MAX_IMAGE_PIXELS) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMB_PX, THUMB_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    except (OSError, ValueError):  # unreadable, or refused by the size limit
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _change(item, baseline_item) -> str:
    """How the system's answer relates to the baseline's on the same item and seed."""
    if baseline_item is None:
        return ""
    if item.prediction == baseline_item.prediction:
        return "same"
    if item.correct and not baseline_item.correct:
        return "fixed"
    if baseline_item.correct and not item.correct:
        return "broke"
    return "changed"


def _confidence(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, 4) if math.isfinite(value) else None


def collect(board, tables: Tables) -> list[dict]:
    """The page's data for every explorable fusion-head cell: per task, each system's first
    seed. A cell whose arrays are missing or damaged stops it with the reader's one-line
    ``DataError``, as it stops the leaderboard."""
    from ravlm_bench.api import cell_items, explorable_cells

    first_seed: dict[tuple[str, str], int] = {}
    explorable = set()
    for task, system, seed in explorable_cells(board):
        if board.tasks.get(task, {}).get("head") not in (None, "fusion-head"):
            continue
        explorable.add((task, system, seed))
        first_seed[(task, system)] = min(seed, first_seed.get((task, system), seed))
    loaded: dict[tuple[str, str, int], list] = {}

    def items_of(task: str, system: str, seed: int) -> list:
        if (task, system, seed) not in loaded:
            loaded[(task, system, seed)] = sorted(cell_items(board.run_dir, task, system, seed),
                                                  key=lambda item: item.index)
        return loaded[(task, system, seed)]

    tasks = []
    for task in board.tasks:
        systems = []
        for system in board.systems:
            if (task, system) not in first_seed:
                continue
            seed = first_seed[(task, system)]
            baseline = None
            if board.baseline and system != board.baseline \
                    and (task, board.baseline, seed) in explorable:
                baseline = {item.index: item for item in items_of(task, board.baseline, seed)}
            entry = _system_entry(board, system, seed, items_of(task, system, seed),
                                  baseline, tables)
            entry["dependence"] = dependence_entry(board, task, system)
            systems.append(entry)
        if systems:
            # a multi-label truth lists its classes joined by ", "; a single-label class
            # name may itself hold a comma (a VQA answer), so only the former is split
            multi = board.tasks[task].get("targets") == "multi-label"
            classes = sorted({part for s in systems for row in s["items"]
                              for part in _truth_classes(tables.strings[row[3]], multi)})
            tasks.append({"name": task, "classes": classes, "multi": multi,
                          "metric": board.main_metric(task), "systems": systems})
    return tasks


def _system_entry(board, system: str, seed: int, items: list, baseline: dict | None,
                  tables: Tables) -> dict:
    """One system's first :data:`ITEM_CAP` items as the page's rows."""
    rows = []
    for item in items[:ITEM_CAP]:
        neighbours = [[tables.thumb(n.image), tables.string(n.text),
                       tables.string(n.label), _confidence(n.score)]
                      for n in item.neighbours]
        theirs = baseline.get(item.index) if baseline is not None else None
        rows.append([int(item.index), tables.thumb(item.image),
                     tables.string(item.text), tables.string(item.truth),
                     tables.string(item.prediction), _confidence(item.confidence),
                     bool(item.correct), _change(item, theirs), neighbours,
                     tables.string(theirs.prediction) if theirs is not None else -1])
    return {"name": system, "seed": seed, "total": len(items),
            "baseline": system == board.baseline, "compared": baseline is not None,
            "items": rows}


def dependence_entry(board, task: str, system: str) -> dict | None:
    """The dependence panel's data for one (task, system), from the leaderboard's seed means:
    the dependence as text (``0.428 [0.372, 0.483]``), the curve's levels (``p=0`` ...
    ``none``, each with its share p, value and text) and, for a knowledge task, the
    answer-versus-evidence shares as percentages (``[[right with, right without], [wrong
    with, wrong without]]``). None when the system did not measure a dependence."""
    from ravlm_bench.api import ANSWER_EVIDENCE_COLUMNS, DEPENDENCE_METRIC

    rows = dependence_rows(board, task)
    if rows is None or system not in rows.index:
        return None
    row = rows.loc[system]
    curve = [_curve_level(level, value) for level, value in curve_values(row).items()]
    shares = [number_or_none(row.get(column)) for column in ANSWER_EVIDENCE_COLUMNS]
    evidence = None
    if any(share is not None for share in shares):
        text = ["–" if share is None else f"{100 * share:.1f}%" for share in shares]
        evidence = [text[:2], text[2:]]
    return {"text": dependence_label(row), "value": number_or_none(row[DEPENDENCE_METRIC]),
            "curve": curve, "evidence": evidence}


def _curve_level(level: str, value: float | None) -> dict:
    """One level of the panel's curve: its name (``p=0.25``, ``none``), its share p (None
    for none), the main metric there and that as text."""
    from ravlm_bench.api import level_label, level_share

    return {"level": level_label(level), "share": level_share(level),
            "value": value, "text": "–" if value is None else f"{value:.3f}"}


CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem;
       color: #1d1d1f; line-height: 1.35; }
h1 { font-size: 1.5rem; margin: 0 0 .4rem; }
p.note { color: #444; max-width: 75rem; margin: .3rem 0; }
.controls { display: flex; flex-wrap: wrap; gap: .6rem 1.2rem; align-items: center;
            background: #f4f5f7; padding: .6rem .8rem; border-radius: 6px; margin: 1rem 0; }
.controls select { font: inherit; max-width: 22rem; }
.layout { display: flex; gap: 1rem; align-items: flex-start; }
#items { list-style: none; margin: 0; padding: 0; flex: 1 1 55%; max-height: 75vh;
         overflow-y: auto; border: 1px solid #ddd; border-radius: 6px; }
#items li { border-bottom: 1px solid #eee; }
button.item { display: flex; gap: .6rem; width: 100%; text-align: left; font: inherit;
              background: none; border: 0; padding: .35rem .5rem; cursor: pointer; }
button.item:hover, button.item[aria-pressed="true"] { background: #eaf1fb; }
button.item:focus-visible { outline: 2px solid #0b57d0; outline-offset: -2px; }
.thumb { width: 48px; height: 48px; object-fit: contain; flex: none; background: #eee; }
.placeholder { display: inline-flex; align-items: center; justify-content: center;
               font-size: .6rem; color: #666; text-align: center; }
.meta { font-size: .8rem; color: #333; min-width: 0; }
.meta .text { display: block; overflow: hidden; text-overflow: ellipsis;
              white-space: nowrap; max-width: 40rem; }
.right { color: #1b6e2a; font-weight: 600; }
.wrong { color: #b00020; font-weight: 600; }
.badge { font-size: .72rem; border-radius: 3px; padding: 0 .3rem; margin-left: .3rem; }
.badge.fixed { background: #dcefdc; } .badge.broke { background: #f8dcdc; }
.badge.changed { background: #eee; }
#detail { flex: 1 1 45%; position: sticky; top: 1rem; border: 1px solid #ddd;
          border-radius: 6px; padding: .6rem .8rem; min-width: 0; }
#detail h2 { font-size: 1.1rem; margin: 0 0 .4rem; }
#detail .text { overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: .8rem; width: 100%; }
th, td { padding: .2rem .35rem; border-bottom: 1px solid #e2e2e2; text-align: left;
         vertical-align: top; }
td.score { text-align: right; font-variant-numeric: tabular-nums; }
td.neighbour-text { overflow-wrap: anywhere; }
#dependence { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .8rem;
              margin: 0 0 1rem; display: flex; flex-wrap: wrap; gap: .4rem 1.5rem;
              align-items: flex-start; }
#dependence[hidden] { display: none; }
#dependence h2 { font-size: 1rem; margin: 0; flex: 1 1 100%; }
#dependence p { margin: 0; flex: 1 1 100%; font-size: .85rem; }
#dependence-tables { display: flex; flex-wrap: wrap; gap: .4rem 1.5rem;
                     align-items: flex-start; }
#dependence table { width: auto; }
#dependence td { text-align: right; font-variant-numeric: tabular-nums; }
#dependence th[scope="row"] { text-align: left; }
.sparkline { flex: none; }
.sparkline polyline { fill: none; stroke: #1d3f72; stroke-width: 1.5; }
.sparkline circle { fill: #1d3f72; }
.sparkline circle.none { fill: #fff; stroke: #1d3f72; stroke-width: 1.5; }
.sparkline line { stroke: #bbb; stroke-width: 1; }
.sparkline text { font-size: 9px; fill: #555; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("explorer-data").textContent);
  var S = data.strings, T = data.thumbs;
  var el = function (id) { return document.getElementById(id); };
  var taskSel = el("task"), systemSel = el("system"), outcomeSel = el("outcome"),
      classSel = el("class"), changeSel = el("change"), list = el("items"),
      summary = el("summary"), detail = el("detail"), dependence = el("dependence"),
      sparklineChart = el("dependence-sparkline");
  function option(select, value, label) {
    var o = document.createElement("option");
    o.value = value; o.textContent = label; select.appendChild(o);
  }
  function image(index, label) {
    if (index >= 0) {
      var img = document.createElement("img");
      img.className = "thumb"; img.alt = label; img.src = T[index];
      return img;
    }
    var box = document.createElement("span");
    box.className = "thumb placeholder"; box.textContent = "no image";
    box.setAttribute("role", "img"); box.setAttribute("aria-label", label + " (no image)");
    return box;
  }
  function text(tag, content, cls) {
    var node = document.createElement(tag);
    node.textContent = content; if (cls) node.className = cls;
    return node;
  }
  function svg(tag, attributes) {
    // the namespace the HTML parser gave the page's own <svg>: the page names no URL
    var node = document.createElementNS(sparklineChart.namespaceURI, tag);
    Object.keys(attributes).forEach(function (k) { node.setAttribute(k, String(attributes[k])); });
    return node;
  }
  function drawSparkline(chart, curve, metric) {
    // p from 0 to 1, "none" (nothing retrieved) apart at 1.15, as dependence.png draws it;
    // y spans [0, 1] (wider if a value is outside), so flat curves look flat
    var W = 220, H = 90, LEFT = 24, RIGHT = 16, TOP = 8, BOTTOM = 16, NONE = 1.15;
    var known = curve.filter(function (c) { return c.value !== null; });
    var values = known.map(function (c) { return c.value; });
    var lo = Math.min.apply(null, [0].concat(values)),
        hi = Math.max.apply(null, [1].concat(values));
    function x(share) { return LEFT + (W - LEFT - RIGHT) * share / NONE; }
    function y(value) { return TOP + (H - TOP - BOTTOM) * (hi - value) / (hi - lo); }
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    chart.setAttribute("width", String(W)); chart.setAttribute("height", String(H));
    chart.setAttribute("aria-label", metric + " by share p of corrupted retrieved items: " +
      curve.map(function (c) { return c.level + " " + c.text; }).join(", "));
    [lo, hi].forEach(function (v) {
      chart.appendChild(svg("line", {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v)}));
      var label = svg("text", {x: LEFT - 4, y: (y(v) + 3).toFixed(1), "text-anchor": "end"});
      label.textContent = String(Number(v.toFixed(2)));
      chart.appendChild(label);
    });
    var points = known.filter(function (c) { return c.share !== null; });
    chart.appendChild(svg("polyline", {points: points.map(function (c) {
      return x(c.share).toFixed(1) + "," + y(c.value).toFixed(1); }).join(" ")}));
    known.forEach(function (c) {
      var none = c.share === null;
      chart.appendChild(svg("circle", {cx: x(none ? NONE : c.share).toFixed(1),
                                       cy: y(c.value).toFixed(1), r: none ? 3 : 2.5,
                                       "class": none ? "none" : "level"}));
    });
    [["p=0", 0], ["0.5", 0.5], ["1", 1], ["none", NONE]].forEach(function (tick) {
      var label = svg("text", {x: x(tick[1]).toFixed(1), y: H - 3, "text-anchor": "middle"});
      label.textContent = tick[0];
      chart.appendChild(label);
    });
  }
  function showDependence(s) {
    var d = s.dependence, metric = task().metric, line = el("dependence-summary"),
        tables = el("dependence-tables");
    dependence.hidden = !d;
    el("dependence-title").textContent = d ? "Retrieval dependence of " + s.name : "";
    [line, sparklineChart, tables].forEach(function (node) {
      while (node.firstChild) node.removeChild(node.firstChild);
    });
    if (!d) return;
    line.appendChild(document.createTextNode(metric + " at p=0 minus at p=1: "));
    var value = text("strong", d.text);
    value.id = "dependence-value";
    value.setAttribute("data-value", d.value === null ? "" : String(d.value));
    line.appendChild(value);
    line.appendChild(document.createTextNode(
      " (95% interval paired over the same resamples). p: the share of each test query's " +
      "retrieved items replaced by random knowledge-base items; none: nothing retrieved. " +
      "Means over seeds " + data.seeds.join(", ") + ", as in the leaderboard; the items " +
      "below are seed " + s.seed + "'s."));
    drawSparkline(sparklineChart, d.curve, metric);
    var curve = document.createElement("table");
    curve.id = "dependence-curve";
    curve.appendChild(text("caption", metric + " by level"));
    var levels = curve.createTHead().insertRow(), row = curve.createTBody().insertRow();
    d.curve.forEach(function (c) {
      var th = text("th", c.level); th.scope = "col"; levels.appendChild(th);
      row.insertCell().textContent = c.text;
    });
    tables.appendChild(curve);
    if (!d.evidence) return;
    var evidence = document.createElement("table");
    evidence.id = "answer-evidence";
    evidence.appendChild(text("caption", "share of questions"));
    var head = evidence.createTHead().insertRow();
    head.appendChild(text("td", ""));
    ["acceptable answer in retrieved items", "not in them"].forEach(function (h) {
      var th = text("th", h); th.scope = "col"; head.appendChild(th);
    });
    var body = evidence.createTBody();
    ["right", "wrong"].forEach(function (answer, i) {
      var r = body.insertRow(), th = text("th", answer);
      th.scope = "row"; r.appendChild(th);
      d.evidence[i].forEach(function (share) { r.insertCell().textContent = share; });
    });
    tables.appendChild(evidence);
  }
  function task() { return data.tasks[Number(taskSel.value)]; }
  function system() { return task().systems[Number(systemSel.value)]; }
  function fillSystems() {
    systemSel.innerHTML = ""; classSel.innerHTML = "";
    task().systems.forEach(function (s, i) {
      option(systemSel, i, s.name + (s.baseline ? " (baseline)" : ""));
    });
    option(classSel, "", "any class");
    task().classes.forEach(function (c) { option(classSel, c, c); });
  }
  function conf(v) { return v === null ? "–" : v.toFixed(3); }
  function matches(item) {
    var outcome = outcomeSel.value, wanted = classSel.value, change = changeSel.value;
    if (outcome === "wrong" && item[6]) return false;
    if (outcome === "right" && !item[6]) return false;
    if (wanted && (task().multi ? S[item[3]].split(", ") : [S[item[3]]])
        .indexOf(wanted) === -1) return false;
    if (change === "changed" && ["fixed", "broke", "changed"].indexOf(item[7]) === -1)
      return false;
    if ((change === "fixed" || change === "broke") && item[7] !== change) return false;
    return true;
  }
  function show(item, button) {
    list.querySelectorAll("button.item").forEach(function (b) {
      b.setAttribute("aria-pressed", b === button ? "true" : "false");
    });
    detail.innerHTML = "";
    detail.appendChild(text("h2", "Item #" + item[0]));
    detail.appendChild(image(item[1], "item #" + item[0]));
    detail.appendChild(text("p", S[item[2]], "text"));
    var facts = document.createElement("p");
    facts.appendChild(text("span", item[6] ? "right" : "wrong", item[6] ? "right" : "wrong"));
    facts.appendChild(document.createTextNode(
      " · truth: " + S[item[3]] + " · prediction: " + S[item[4]] +
      " · confidence: " + conf(item[5])));
    detail.appendChild(facts);
    if (item[9] >= 0) {
      var versus = text("p", "The baseline (" + data.baseline + ") predicted " + S[item[9]] +
                        " on this item and seed" + (item[7] === "same" ? ": the same answer."
                                                    : ": retrieval " + item[7] + " it. "));
      if (item[7] !== "same") versus.appendChild(text("span", item[7], "badge " + item[7]));
      detail.appendChild(versus);
    }
    var neighbours = item[8];
    if (!neighbours.length) {
      detail.appendChild(text("p", "This system retrieves no neighbours."));
      return;
    }
    var table = document.createElement("table");
    table.id = "neighbours";
    table.appendChild(text("caption", neighbours.length + " retrieved neighbours"));
    var head = table.createTHead().insertRow();
    ["rank", "image", "text", "label", "score"].forEach(function (h) {
      var th = text("th", h); th.scope = "col"; head.appendChild(th);
    });
    var body = table.createTBody();
    neighbours.forEach(function (n, rank) {
      var row = body.insertRow(); row.className = "neighbour";
      row.insertCell().textContent = String(rank + 1);
      row.insertCell().appendChild(image(n[0], "neighbour " + (rank + 1)));
      var t = row.insertCell(); t.className = "neighbour-text"; t.textContent = S[n[1]];
      row.insertCell().textContent = S[n[2]] || "–";
      var s = row.insertCell(); s.className = "score";
      s.textContent = n[3] === null ? "–" : n[3].toFixed(4);
      s.setAttribute("data-value", n[3] === null ? "" : String(n[3]));
    });
    detail.appendChild(table);
  }
  function render() {
    var s = system();
    changeSel.disabled = !s.compared;
    list.innerHTML = "";
    var shown = 0;
    s.items.forEach(function (item) {
      if (!matches(item)) return;
      shown += 1;
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button"; button.className = "item";
      button.setAttribute("aria-pressed", "false");
      button.setAttribute("data-index", String(item[0]));
      button.setAttribute("data-correct", item[6] ? "true" : "false");
      button.appendChild(image(item[1], "item #" + item[0]));
      var meta = document.createElement("span"); meta.className = "meta";
      meta.appendChild(text("span", "#" + item[0] + " " + S[item[2]], "text"));
      meta.appendChild(text("span", item[6] ? "right" : "wrong", item[6] ? "right" : "wrong"));
      meta.appendChild(document.createTextNode(
        " truth: " + S[item[3]] + " · prediction: " + S[item[4]] + " (" + conf(item[5]) + ")"));
      if (item[7] && item[7] !== "same")
        meta.appendChild(text("span", item[7], "badge " + item[7]));
      button.appendChild(meta);
      button.addEventListener("click", function () { show(item, button); });
      li.appendChild(button); list.appendChild(li);
    });
    var note = s.compared ? "" : (s.baseline ? " (the baseline itself)"
                                              : " (no baseline cell at this seed to compare)");
    summary.textContent = shown + " of " + s.items.length + " items shown; " + s.name +
      ", seed " + s.seed + ", first " + s.items.length + " of " + s.total +
      " test items" + note;
    detail.innerHTML = "";
    detail.appendChild(text("p", "Choose an item to see its retrieved neighbours."));
    showDependence(s);
  }
  if (!data.tasks.length) return;
  data.tasks.forEach(function (t, i) { option(taskSel, i, t.name); });
  taskSel.addEventListener("change", function () { fillSystems(); render(); });
  [systemSel, outcomeSel, classSel, changeSel].forEach(function (s) {
    s.addEventListener("change", render);
  });
  fillSystems(); render();
})();
"""

SIZE_MARK = "@@PAGE_SIZE@@"


def _truth_classes(truth: str, multi: bool) -> list[str]:
    parts = truth.split(", ") if multi else [truth]
    return [part for part in parts if part]


def _select(ident: str, label: str, options: list[tuple[str, str]]) -> str:
    body = "".join(f'<option value="{v}">{html.escape(t)}</option>' for v, t in options)
    return f'<label for="{ident}">{label}</label><select id="{ident}">{body}</select>'


def render_explorer(board, tasks: list[dict], tables: Tables, generated: str) -> str:
    title = html.escape(f"Explorer: {board.suite}")
    payload = inline_json({"strings": tables.strings, "thumbs": tables.thumbs, "tasks": tasks,
                           "baseline": board.baseline or "", "seeds": board.seeds},
                          separators=(",", ":"), allow_nan=False)
    lead = (f"Each fusion-head system's test items, first seed, the first {ITEM_CAP} items of "
            f"the test split per system, with the neighbours retrieval returned. Choose an "
            f"item to see them. A system that measured its retrieval dependence shows it above its "
            f"items. Thumbnails are {THUMB_PX} px JPEGs, one per image; this page "
            f"is {SIZE_MARK} (budget {SIZE_BUDGET_MB:.0f} MB).")
    if tables.unreadable:
        lead += f" {tables.unreadable} image(s) could not be read and show a placeholder."
    parts = ["<!DOCTYPE html>", f"<!-- {generated} -->", '<html lang="en"><head>',
             '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{title}</title>", f"<style>{CSS}</style></head><body>",
             f"<h1>{title}</h1>", f'<p class="note">{html.escape(lead)}</p>']
    if not tasks:
        parts.append('<p class="note" id="empty">No cell of this run carries explorer data '
                     "(per-item predictions and neighbours); a run made with a version of "
                     "ravlm-bench that records them fills this page.</p>")
    else:
        parts += ['<div class="controls">',
                  _select("task", "Task", []), _select("system", "System", []),
                  _select("outcome", "Items", [("all", "all"), ("wrong", "wrong only"),
                                               ("right", "right only")]),
                  _select("class", "True class", []),
                  _select("change", "Retrieval changed the answer (vs baseline)",
                          [("all", "any"), ("changed", "changed"), ("fixed", "fixed it"),
                           ("broke", "broke it")]),
                  "</div>", '<p id="summary" aria-live="polite"></p>',
                  '<section id="dependence" aria-labelledby="dependence-title" hidden>'
                  '<h2 id="dependence-title"></h2><p id="dependence-summary"></p>'
                  '<svg id="dependence-sparkline" class="sparkline" role="img"></svg>'
                  '<div id="dependence-tables"></div></section>',
                  '<div class="layout"><ol id="items" aria-label="test items"></ol>',
                  '<section id="detail" aria-live="polite"></section></div>']
    parts += [f'<script type="application/json" id="explorer-data">{payload}</script>',
              f"<script>{SCRIPT}</script>", "</body></html>"]
    page = "\n".join(parts) + "\n"
    size = len(page.encode("utf-8"))
    return page.replace(SIZE_MARK, f"{size / 1e6:.2f} MB", 1)


class ExplorerPublisher:
    """explorer.html (see the module docstring)."""

    def publish(self, board, out_dir):
        tables = Tables()
        page = render_explorer(board, collect(board, tables), tables, GENERATED)
        return [write_published(out_dir / "explorer.html", page)]
