// ollama-locust, added to Locust's page (progressive enhancement: if Locust's markup changes, its own
// LLM table and the Download Data links still work):
// * the LLM tab: our page ./llm/?embed=1 (per-stage table, per-class toggle, time split, charts) in place
//   of Locust's plain table, sized to its content;
// * the start form: the project's fields in sections (target and model, load, thresholds, run) with short
//   labels and the help under each field (from ./llm/form, i.e. the option table);
// * after Start: "loading the model …" while the master checks the target and warms the model up.
(function () {
  "use strict";
  var MARK = "TTFT p50 ms";
  var ID = "llm-extra";
  var base = new URL("./llm/", document.baseURI);
  var pending = false, form = null, frameHeight = 0;

  function camel(name) { return name.replace(/_([a-z0-9])/g, function (m, c) { return c.toUpperCase(); }); }

  function locustTable() {
    var heads = document.querySelectorAll("th");
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].textContent.trim() === MARK && !heads[i].closest("#" + ID)) {
        return heads[i].closest(".MuiTableContainer-root") || heads[i].closest("table");
      }
    }
    return null;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = new URL(href, base).href;
    a.textContent = text;
    a.style.marginRight = "1.5em";
    return a;
  }

  function extra() {
    var box = document.createElement("div");
    box.id = ID;
    box.style.margin = "8px 0 16px";
    var links = document.createElement("div");
    links.style.marginBottom = "6px";
    links.appendChild(link("requests.csv", "requests.csv"));
    links.appendChild(link("report.html", "report (HTML, with plots)"));
    links.appendChild(link("report.md", "report (markdown)"));
    var open = link("./", "this view in a page of its own");
    open.target = "_blank";
    links.appendChild(open);
    box.appendChild(links);
    var frame = document.createElement("iframe");
    frame.src = new URL("./?embed=1", base).href;
    frame.title = "LLM live view";
    frame.style.cssText = "width:100%;border:0;display:block;height:" + (frameHeight || 900) + "px";
    box.appendChild(frame);
    return box;
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== location.origin || !event.data || !event.data.llmHeight) return;
    frameHeight = event.data.llmHeight + 8;
    var box = document.getElementById(ID), table = locustTable();
    if (box) box.querySelector("iframe").style.height = frameHeight + "px";
    if (table) table.style.display = "none";  // our page shows the same rows and more
  });

  function syncTab() {
    var table = locustTable();
    var box = document.getElementById(ID);
    if (!table) {
      if (box) box.remove();
      return;
    }
    if (frameHeight) table.style.display = "none";
    if (box && document.body.contains(box)) return;  // never moved once placed: moving an iframe reloads it
    table.insertAdjacentElement("afterend", extra());
  }

  // -- the start form ---------------------------------------------------------------------
  function fieldRoot(input) {
    return input.closest(".MuiFormControlLabel-root") || input.closest(".MuiFormControl-root");
  }

  function syncForm() {
    if (!form) return;
    var headed = {};
    form.fields.forEach(function (field) {
      var input = document.querySelector("[name='" + camel(field.name) + "']") || document.querySelector("[name='" + field.name + "']");
      if (!input) return;
      var root = fieldRoot(input);
      if (!root || root.dataset.llmField) return;
      root.dataset.llmField = field.name;
      var label = root.querySelector(".MuiFormControlLabel-label") || root.querySelector("label");
      if (label) label.textContent = field.label;
      var legend = root.querySelector("legend span");
      if (legend) legend.textContent = field.label;
      var help = document.createElement("div");
      help.className = "llm-help";
      help.textContent = field.help;
      help.style.cssText = "font-size:12px;opacity:.7;margin:-28px 0 0 14px;line-height:1.3";
      root.insertAdjacentElement("afterend", help);
    });
    form.groups.forEach(function (group) {
      var first = null;
      form.fields.some(function (field) {
        if (field.group !== group.key) return false;
        first = document.querySelector("[data-llm-field='" + field.name + "']");
        return !!first;
      });
      if (!first || headed[group.key]) return;
      headed[group.key] = true;
      var wrapper = first;
      var prev = wrapper.previousElementSibling;
      if (prev && prev.classList.contains("llm-group")) return;
      var head = document.createElement("div");
      head.className = "llm-group";
      head.dataset.group = group.key;
      head.textContent = group.title;
      head.style.cssText = "font-weight:600;margin:8px 0 -16px;border-bottom:1px solid rgba(128,128,128,.35);padding-bottom:2px";
      wrapper.insertAdjacentElement("beforebegin", head);
    });
  }

  fetch(new URL("form", base), { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (d) { form = d; syncForm(); })
    .catch(function () {});

  // -- "loading the model …" after Start -------------------------------------------------------
  var banner = null, polling = false;
  function showPhase(text) {
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "llm-phase";
      banner.setAttribute("role", "status");
      banner.style.cssText = "position:fixed;top:72px;left:50%;transform:translateX(-50%);z-index:2000;padding:10px 18px;" +
        "background:#1565C0;color:#fff;border-radius:6px;box-shadow:0 2px 10px rgba(0,0,0,.3);font:14px system-ui,sans-serif";
      document.body.appendChild(banner);
    }
    banner.textContent = "ollama-locust: " + text + " …";
    banner.style.display = text ? "block" : "none";
  }

  function watchPhase() {
    if (polling) return;
    polling = true;
    var started = Date.now();
    (function tick() {
      fetch(new URL("phase", base), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (d) {
          if (d.phase) { showPhase(d.phase); return true; }
          showPhase("");
          return Date.now() - started < 1500 && (d.state === "ready" || d.state === "stopped");
        })
        .catch(function () { return false; })
        .then(function (again) {
          if (again && Date.now() - started < 600000) setTimeout(tick, 300); else polling = false;
        });
    })();
  }

  document.addEventListener("submit", watchPhase, true);

  new MutationObserver(function () {
    if (!pending) {
      pending = true;
      requestAnimationFrame(function () { pending = false; syncTab(); syncForm(); });
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
