"""The HTML report's fixed parts: page head, style sheet, script, tail (render/html.py).

The Content-Security-Policy allows inline style and script and nothing else: no request can
leave the page (no fonts, images or scripts from anywhere). System fonts only. The script only
sorts and filters the connection table; the page reads the same without it.
"""

HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<style>%(style)s</style>
</head><body>
"""

TAIL = """<footer>Written by %(tool)s %(version)s. Self-contained: nothing here is loaded from the
network.</footer>
<script>%(script)s</script>
</body></html>
"""

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 0 20px 40px; max-width: 1320px; background: #fff; }
h1 { font-size: 22px; margin: 18px 0 2px; } h2 { font-size: 18px; margin: 26px 0 6px;
       border-bottom: 1px solid #ddd; } h3 { font-size: 15px; margin: 16px 0 4px; }
.files { color: #555; margin: 0; word-break: break-all; }
.note { color: #555; max-width: 70em; }
.warning { color: #8a5a00; } .error { color: #b3261e; }
.sum { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
table.facts th { text-align: left; padding-right: 14px; white-space: nowrap; vertical-align: top; }
svg.chart text { font-size: 12px; fill: #333; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; color: #444; }
.sw { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: -1px; }
.v-closed { fill: #3c9a50; background: #3c9a50; }
.v-half_closed { fill: #6fb7a8; background: #6fb7a8; }
.v-open { fill: #5b8fd0; background: #5b8fd0; }
.v-close_wait { fill: #e0a020; background: #e0a020; }
.v-reset { fill: #e8743b; background: #e8743b; }
.v-half_open { fill: #9c2f2f; background: #9c2f2f; }
.v-refused { fill: #d3423a; background: #d3423a; }
.v-unanswered { fill: #8a55b5; background: #8a55b5; }
.sw.cw { background: repeating-linear-gradient(45deg, #d08a00 0 2px, #fff3d6 2px 5px); }
.sw.tw { background: repeating-linear-gradient(45deg, #8a8a8a 0 2px, #f0f0f0 2px 5px); }
svg.timeline { display: block; margin: 6px 0; }
.timeline .grid { stroke: #eee; } .timeline .tick, .timeline .sid { font-size: 11px; fill: #666; }
.timeline .linger.cw { fill: url(#hatch-cw); } .timeline .linger.tw { fill: url(#hatch-tw); }
.timeline .area { opacity: .9; }
.timeline .mark { stroke: #fff; stroke-width: .8; }
.timeline path.sev-info { fill: #4a78b8; } .timeline path.sev-warning { fill: #c77700; }
.timeline path.sev-error { fill: #c8342b; }
.timeline .conn:hover rect.bar { stroke: #000; stroke-width: 1.5; }
.timeline a { cursor: pointer; }
span.sev-error, li .sev-error { color: #c8342b; font-weight: 600; }
span.sev-warning { color: #a86400; font-weight: 600; } span.sev-info { color: #4a78b8; }
.detail { border-top: 1px solid #eee; padding-top: 4px; }
.detail:target, tr:target { background: #fff6d8; }
.scroll { overflow-x: auto; }
.good { color: #2d7a3e; } .bad { color: #b3261e; } .meh { color: #8a5a00; }
table#conns { border-collapse: collapse; font-size: 13px; width: 100%; }
#conns th { text-align: left; border-bottom: 2px solid #ccc; cursor: pointer; user-select: none;
            white-space: nowrap; padding: 3px 8px; position: sticky; top: 0; background: #fafafa; }
#conns th.up::after { content: " ▲"; } #conns th.down::after { content: " ▼"; }
#conns td { border-bottom: 1px solid #eee; padding: 2px 8px; white-space: nowrap; }
#conns td:last-child { white-space: normal; }
#conns .num { text-align: right; }
.tools input[type=search] { width: 28em; padding: 3px 6px; }
footer { margin-top: 30px; color: #888; font-size: 12px; }
"""

SCRIPT = r"""
(function () {
  var table = document.getElementById("conns");
  if (!table) return;
  var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
  var filter = document.getElementById("filter"), att = document.getElementById("attention");
  var shown = document.getElementById("shown");
  var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function apply() {
    var q = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean), n = 0;
    rows.forEach(function (r, i) {
      var ok = (!att.checked || r.classList.contains("att")) &&
               q.every(function (w) { return texts[i].indexOf(w) >= 0; });
      r.hidden = !ok; if (ok) n++;
    });
    shown.textContent = n + " of " + rows.length + " shown";
  }
  filter.addEventListener("input", apply); att.addEventListener("change", apply);
  function key(r, col) {
    var c = r.cells[col], v = c.getAttribute("data-v");
    if (v !== null) return parseFloat(v);
    if (c.classList.contains("num")) return parseFloat(c.textContent);
    return c.textContent;
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.addEventListener("click", function () {
      var col = +th.getAttribute("data-col"), down = th.classList.contains("up");
      Array.prototype.forEach.call(th.parentNode.cells, function (h) {
        h.classList.remove("up", "down");
      });
      th.classList.add(down ? "down" : "up");
      var order = rows.map(function (r, i) { return [key(r, col), i, r]; });
      order.sort(function (a, b) {
        var x = a[0], y = b[0], c = x < y ? -1 : x > y ? 1 : a[1] - b[1];
        return down ? -c : c;
      });
      var frag = document.createDocumentFragment();
      order.forEach(function (o) { frag.appendChild(o[2]); });
      body.appendChild(frag);
    });
  });
  window.addEventListener("hashchange", function () {
    var el = document.getElementById(location.hash.slice(1));
    if (el && el.hidden) { filter.value = ""; att.checked = false; apply(); el.scrollIntoView(); }
  });
  apply();
})();
"""
