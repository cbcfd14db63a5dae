// ollama-locust: the LLM live page — the per-stage table (per-class rows behind a toggle, failures that
// expand by class), where the time goes per stage, and charts on a time axis with the stage boundaries.
// Polls ./stats every 2 s; draws on canvas, no library, works offline. Embedded under Locust's LLM tab
// as ./?embed=1 (tab.js), where it tells the parent page its height.
(function () {
  "use strict";

  // A stage's load as the table's Users cell gives it: "4" (users) or "2 req/s" (an open-loop rate stage).
  function loadOf(users) { return /req\/s$/.test(String(users)) ? String(users) : users + " users"; }
  var POLL_MS = 2000;
  var embed = new URLSearchParams(location.search).has("embed");
  if (embed) document.body.classList.add("embed");
  var COLORS = ["#00C853", "#FF6D00", "#2979FF", "#D500F9", "#8D6E63"];
  var SPLIT_COLORS = ["#FFB300", "#8E24AA", "#1E88E5", "#43A047", "#9E9E9E"];
  var openFailed = {};  // stage -> the failed breakdown is open
  var byClass = document.getElementById("by-class");

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function esc(v) { return String(v == null ? "" : v).replace(/[&<>"]/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; }); }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function clock(t, seconds) {
    var s = new Date(t * 1000).toTimeString();
    return seconds ? s.slice(0, 8) : s.slice(0, 5);
  }

  var TICKS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  function timeTicks(t0, t1, width) {
    var want = Math.max(2, Math.floor(width / 90)), step = TICKS[TICKS.length - 1];
    for (var i = 0; i < TICKS.length; i++) if ((t1 - t0) / TICKS[i] <= want) { step = TICKS[i]; break; }
    var ticks = [];
    for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
    return { ticks: ticks, seconds: step < 60 };
  }

  // lines: [{label, key}] over points [{t, <key>}]; marks: [{t, label}] stage boundaries
  function draw(canvas, points, lines, marks) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = w * ratio; canvas.height = h * ratio;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    var left = 46, right = 10, top = 34, bottom = 20;
    var pw = w - left - right, ph = h - top - bottom;
    var max = 0;
    points.forEach(function (p) { lines.forEach(function (l) { if (p[l.key] != null) max = Math.max(max, p[l.key]); }); });
    max = niceMax(max * 1.05);
    var t1 = points.length ? points[points.length - 1].t : Date.now() / 1000;
    var t0 = points.length ? points[0].t : t1 - 60;
    if (t1 - t0 < 30) t0 = t1 - 30;
    function x(t) { return left + (t - t0) / (t1 - t0) * pw; }
    function y(v) { return top + ph - v / max * ph; }
    ctx.strokeStyle = css("--grid"); ctx.fillStyle = css("--muted"); ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var v = max * i / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(v >= 100 ? v.toFixed(0) : v.toPrecision(3).replace(/\.?0+$/, ""), left - 4, yy + 4);
    }
    var axis = timeTicks(t0, t1, pw);  // a real time axis: wall-clock ticks
    ctx.textAlign = "center";
    axis.ticks.forEach(function (t) {
      var xt = Math.round(x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xt, top + ph); ctx.lineTo(xt, top + ph + 4); ctx.stroke();
      ctx.fillText(clock(t, axis.seconds), xt, h - 5);
    });
    ctx.setLineDash([3, 3]); ctx.textAlign = "left";  // stage boundaries, labelled with the user count
    (marks || []).forEach(function (m) {
      if (m.t < t0 || m.t > t1) return;
      var xs = Math.round(x(m.t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xs, top - 4); ctx.lineTo(xs, top + ph); ctx.stroke();
      ctx.fillText(m.label, Math.min(xs + 3, left + pw - ctx.measureText(m.label).width), top - 6);
    });
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
      ctx.fillStyle = COLORS[n % COLORS.length]; ctx.fillRect(lx, 4, 10, 10);
      ctx.fillStyle = css("--fg"); ctx.textAlign = "left"; ctx.fillText(l.label, lx + 14, 13);
      lx += ctx.measureText(l.label).width + 30;
    });
  }

  function failedCell(row) {
    var by = row.failedby || {}, names = Object.keys(by);
    if (!row.failed || row.failed === "n/a" || !names.length) return esc(row.failed);
    var lines = names.map(function (name) {
      var parts = Object.keys(by[name]).map(function (o) { return o + " " + by[name][o]; });
      return "<div>" + esc(name) + ": " + esc(parts.join(", ")) + "</div>";
    }).join("");
    return "<details data-stage=\"" + esc(row.stage) + "\"" + (openFailed[row.stage] ? " open" : "") +
      "><summary>" + esc(row.failed) + "</summary>" + lines + "</details>";
  }

  function cell(col, row) {
    var v = row[col.key];
    if (col.key === "failed") return "<td class=\"" + (row.failed > 0 ? "bad" : "") + "\">" + failedCell(row) + "</td>";
    if (col.key === "stage" && row.userclass) return "<td>" + esc(row.userclass) + "</td>";
    if (col.key === "success" && v !== "n/a" && v != null) return "<td class=\"" + (v < 95 ? "bad" : "") + "\">" + esc(v) + "</td>";
    return "<td>" + esc(v) + "</td>";
  }

  function table(d) {
    var cols = d.columns, html = "<thead><tr>" + cols.map(function (c) {
      return "<th title=\"" + esc(c.tip) + "\" data-key=\"" + esc(c.key) + "\">" + esc(c.title) + "</th>";
    }).join("") + "</tr></thead><tbody>";
    var rows = d.stages.slice();
    rows.forEach(function (r) {
      html += "<tr class=\"stage\" data-stage=\"" + esc(r.stage) + "\">" + cols.map(function (c) { return cell(c, r); }).join("") + "</tr>";
      if (byClass.checked) (r.classes || []).forEach(function (k) {
        html += "<tr class=\"cls\">" + cols.map(function (c) { return cell(c, k); }).join("") + "</tr>";
      });
    });
    var t = d.total;
    html += "<tr class=\"total\" data-stage=\"all\">" + cols.map(function (c) {
      return c.key === "stage" ? "<td>whole test</td>" : c.key === "users" || c.key === "held" ? "<td></td>" : cell(c, t);
    }).join("") + "</tr>";
    var el = document.getElementById("table");
    el.innerHTML = html + "</tbody>";
    el.querySelectorAll("details").forEach(function (det) {
      det.addEventListener("toggle", function () { openFailed[det.dataset.stage] = det.open; postHeight(); });
    });
    document.getElementById("table-note").textContent = rows.length ? "" : "no stage yet: start a test";
  }

  function split(d) {
    var parts = d.time_parts, box = document.getElementById("split");
    var rows = d.stages.filter(function (r) { return r.split && r.split !== "n/a"; });
    if (!rows.length) { box.innerHTML = "<span style=\"color:var(--muted)\">n/a: no successful request with server durations yet</span>"; return; }
    var totals = rows.map(function (r) { return parts.reduce(function (s, p) { return s + (+r.split[p.key] || 0); }, 0); });
    var max = Math.max.apply(null, totals) || 1;
    var html = "<div class=\"legend\">" + parts.map(function (p, i) {
      return "<span><i style=\"background:" + SPLIT_COLORS[i] + "\"></i>" + esc(p.label) + "</span>";
    }).join("") + "</div>";
    rows.forEach(function (r, n) {
      html += "<div class=\"split-row\" data-stage=\"" + esc(r.stage) + "\"><span class=\"split-label\">stage " + esc(r.stage) + " · " +
        esc(loadOf(r.users)) + "</span><span class=\"split-bar\">" + parts.map(function (p, i) {
          var ms = +r.split[p.key] || 0;
          return "<span title=\"" + esc(p.label + ": " + ms + " ms") + "\" style=\"width:" + (100 * ms / max) + "%;background:" + SPLIT_COLORS[i] + "\"></span>";
        }).join("") + "</span><span class=\"split-total\">" + Math.round(totals[n]) + " ms</span></div>";
    });
    box.innerHTML = html;
  }

  var last = null;
  function render() {
    if (!last) return;
    var d = last, cur = d.stages.length ? d.stages[d.stages.length - 1] : null;
    document.getElementById("status").textContent =
      (d.state || "?") + " · " + (d.user_count != null ? d.user_count + " users" : "") +
      (cur ? " · stage " + cur.stage + " (" + loadOf(cur.users) + ")" : " · no stage yet") +
      " · " + d.recorded + " requests recorded · run folder " + d.run_dir;
    var phase = document.getElementById("phase");
    phase.style.display = d.phase ? "block" : "none";
    phase.textContent = d.phase ? d.phase + " …" : "";
    table(d);
    split(d);
    var marks = d.stages.map(function (r) { return { t: r.start_time, label: r.rate ? r.rate + " req/s" : r.users + " users" }; });
    draw(document.getElementById("ttft"), d.series, [{ label: "TTFT p50", key: "ttftp50" }, { label: "TTFT p95", key: "ttftp95" }], marks);
    draw(document.getElementById("tps"), d.series, [{ label: "tokens/s total", key: "tpstotal" }, { label: "per request (p50)", key: "tpsrequest" }], marks);
    draw(document.getElementById("inflight"), d.series, [{ label: "users", key: "users" }, { label: "requests in flight (finished requests)", key: "inflight" }], marks);
    document.body.dataset.points = String(d.series.length);
    document.body.dataset.stages = String(d.stages.length);
    postHeight();
  }

  function postHeight() {
    if (embed && window.parent !== window) {
      window.parent.postMessage({ llmHeight: Math.ceil(document.body.getBoundingClientRect().bottom + window.scrollY) }, location.origin);
    }
  }

  function poll() {
    fetch("stats", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { last = d; render(); })
      .catch(function (e) { document.getElementById("status").textContent = "cannot load ./stats: " + e; })
      .finally(function () { setTimeout(poll, POLL_MS); });
  }
  var rateForm = document.getElementById("rate-form"), rateNote = document.getElementById("rate-note");
  function showRate(d) {
    if (d.plan) { rateForm.style.display = "none"; return; }
    if (document.activeElement !== document.getElementById("rate")) document.getElementById("rate").value = d.rate;
  }
  fetch("rate", { credentials: "same-origin", cache: "no-store" }).then(function (r) { return r.json(); }).then(showRate).catch(function () {});
  rateForm.addEventListener("submit", function (e) {
    e.preventDefault();
    fetch("rate", { method: "POST", credentials: "same-origin", body: new FormData(rateForm) })
      .then(function (r) { return r.json(); })
      .then(function (d) { rateNote.textContent = d.success ? "rate " + d.rate + " req/s: a new stage begins" : d.message; })
      .catch(function (err) { rateNote.textContent = "could not set the rate: " + err; });
  });
  byClass.addEventListener("change", render);
  window.addEventListener("resize", render);
  poll();
})();
