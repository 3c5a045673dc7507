"""explorer.html: each fusion-head system's test items, with what retrieval brought back.

For every (task, system) cell that kept explorer arrays, the first seed's first
:data:`ITEM_CAP` test items: a thumbnail, the text, truth, prediction and confidence, and the
retrieved neighbours (thumbnail, text, label, score). The page filters by outcome, by class,
and by whether the system's answer differs from the baseline's on the same item and seed
(fixed or broke it). One self-contained file: the data is one inline JSON block, thumbnails
are small JPEG data URIs kept once per image path, repeated texts once per string; no string
can end or break the block, as `<`, `>`, `&` are escaped. A cell
whose arrays are missing or fail their checksum stops the page with the reader's one-line
``DataError``, as it stops the leaderboard.
"""

from __future__ import annotations

import base64
import html
import io
import math

from ravlm_plugins.publishers._files import GENERATED, write_published
from ravlm_plugins.publishers._markup import inline_json

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
            systems.append(_system_entry(board, system, seed, items_of(task, system, seed),
                                         baseline, tables))
        if systems:
            # a multi-label truth lists its classes joined by ", "; a single-label class
            # name may itself hold a comma (a VQA answer), so only the former is split
            multi = board.tasks[task].get("targets") == "multi-label"
            classes = sorted({part for s in systems for row in s["items"]
                              for part in _truth_classes(tables.strings[row[3]], multi)})
            tasks.append({"name": task, "classes": classes, "multi": multi,
                          "systems": systems})
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
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("explorer-data").textContent);
  var S = data.strings, T = data.thumbs;
  var el = function (id) { return document.getElementById(id); };
  var taskSel = el("task"), systemSel = el("system"), outcomeSel = el("outcome"),
      classSel = el("class"), changeSel = el("change"), list = el("items"),
      summary = el("summary"), detail = el("detail");
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
                           "baseline": board.baseline or ""},
                          separators=(",", ":"), allow_nan=False)
    lead = (f"Each fusion-head system's test items, first seed, the first {ITEM_CAP} items of "
            f"the test split per system, with the neighbours retrieval returned. Choose an "
            f"item to see them. Thumbnails are {THUMB_PX} px JPEGs, one per image; this page "
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
