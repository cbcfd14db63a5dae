// ollama-locust: the LLM live page (charts of TTFT and tokens/s over time, the LLM table).
// Polls ./stats every 2 s; draws on canvas, no library, works offline.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var embed = new URLSearchParams(location.search).has("embed");
  if (embed) document.body.classList.add("embed");
  var COLORS = ["#00C853", "#FF6D00", "#2979FF", "#D500F9"];

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function clock(t) {
    var d = new Date(t * 1000);
    return d.toTimeString().slice(0, 8);
  }

  // lines: [{label, key}] over points [{t, <key>: number|null, stage}]
  function draw(canvas, points, lines) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * ratio; canvas.height = h * ratio;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    var left = 52, right = 10, top = 22, bottom = 22;
    var pw = w - left - right, ph = h - top - bottom;
    var max = 0;
    points.forEach(function (p) { lines.forEach(function (l) { if (p[l.key] != null) max = Math.max(max, p[l.key]); }); });
    max = niceMax(max * 1.05);
    var t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
    if (t1 <= t0) t1 = t0 + 1;
    function x(t) { return left + (t - t0) / (t1 - t0) * pw; }
    function y(v) { return top + ph - v / max * ph; }
    ctx.strokeStyle = css("--grid"); ctx.fillStyle = css("--muted"); ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var v = max * i / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(v >= 100 ? v.toFixed(0) : v.toPrecision(3).replace(/\.?0+$/, ""), left - 4, yy + 4);
    }
    if (points.length) {
      ctx.textAlign = "left"; ctx.fillText(clock(t0), left, h - 6);
      ctx.textAlign = "right"; ctx.fillText(clock(t1), left + pw, h - 6);
    }
    // stage changes: dashed vertical markers
    ctx.setLineDash([3, 3]);
    for (var s = 1; s < points.length; s++) {
      if (points[s].stage != null && points[s].stage !== points[s - 1].stage) {
        var xs = Math.round(x(points[s].t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(xs, top); ctx.lineTo(xs, top + ph); ctx.stroke();
        ctx.textAlign = "left"; ctx.fillText("stage " + points[s].stage, xs + 3, top + 10);
      }
    }
    ctx.setLineDash([]);
    var lx = left;
    lines.forEach(function (l, n) {
      ctx.strokeStyle = COLORS[n % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
      var open = false;
      points.forEach(function (p) {
        var v = p[l.key];
        if (v == null) { open = false; return; }
        if (open) ctx.lineTo(x(p.t), y(v)); else { ctx.moveTo(x(p.t), y(v)); open = true; }
      });
      ctx.stroke();
      ctx.fillStyle = COLORS[n % COLORS.length]; ctx.fillRect(lx, 6, 10, 10);
      ctx.fillStyle = css("--fg"); ctx.textAlign = "left"; ctx.fillText(l.label, lx + 14, 15);
      lx += ctx.measureText(l.label).width + 32;
    });
  }

  function table(columns, rows) {
    var t = document.getElementById("table");
    var html = "<thead><tr>" + columns.map(function (c) { return "<th>" + c.title + "</th>"; }).join("") + "</tr></thead><tbody>";
    rows.forEach(function (r) {
      html += "<tr>" + columns.map(function (c) {
        var v = r[c.key];
        return "<td>" + String(v == null ? "" : v).replace(/[&<>]/g, function (ch) { return "&#" + ch.charCodeAt(0) + ";"; }) + "</td>";
      }).join("") + "</tr>";
    });
    t.innerHTML = html + "</tbody>";
  }

  var last = null;
  function render() {
    if (!last) return;
    var d = last, st = d.stage;
    document.getElementById("status").textContent =
      (d.state || "?") + " · " + (d.user_count != null ? d.user_count + " users" : "") +
      (st ? " · stage " + st.stage + " (" + st.users + " users, " + st.kind + ")" : " · no stage yet") +
      " · " + d.recorded + " requests recorded";
    draw(document.getElementById("ttft"), d.series, [{ label: "TTFT p50", key: "ttftp50" }, { label: "TTFT p95", key: "ttftp95" }]);
    draw(document.getElementById("tps"), d.series, [{ label: "tokens/s total", key: "tpstotal" }, { label: "tokens/s per request (p50)", key: "tpsrequest" }]);
    if (!embed) table(d.columns, d.rows);
    document.body.dataset.points = String(d.series.length);
  }

  function poll() {
    fetch("stats", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { last = d; render(); })
      .catch(function (e) { document.getElementById("status").textContent = "cannot load ./stats: " + e; })
      .finally(function () { setTimeout(poll, POLL_MS); });
  }
  window.addEventListener("resize", render);
  poll();
})();
