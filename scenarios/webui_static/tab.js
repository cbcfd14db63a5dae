// ollama-locust: under Locust's LLM tab (a table from the extended-tab mechanism), add the live charts
// (an iframe of ./llm/?embed=1) and the download links. Progressive enhancement: if Locust's markup
// changes, the tab still shows its table and the links stay in "Download Data".
(function () {
  "use strict";
  var MARK = "TTFT p50 (ms)";
  var ID = "llm-extra";
  var base = new URL("./llm/", document.baseURI);
  var pending = false;

  function ourTable() {
    var heads = document.querySelectorAll("th");
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].textContent.trim() === MARK) {
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
    box.style.margin = "16px 0";
    var links = document.createElement("div");
    links.style.marginBottom = "8px";
    links.appendChild(link("requests.csv", "requests.csv"));
    links.appendChild(link("report.md", "report so far (markdown)"));
    var open = link("./", "charts in a page of their own");
    open.target = "_blank";
    links.appendChild(open);
    box.appendChild(links);
    var frame = document.createElement("iframe");
    frame.src = new URL("./?embed=1", base).href;
    frame.title = "LLM live charts";
    frame.style.width = "100%";
    frame.style.height = "620px";
    frame.style.border = "0";
    box.appendChild(frame);
    return box;
  }

  function sync() {
    pending = false;
    var table = ourTable();
    var box = document.getElementById(ID);
    if (!table) {
      if (box) box.remove();
      return;
    }
    if (box && box.previousElementSibling === table) return;
    if (box) box.remove();
    table.insertAdjacentElement("afterend", box || extra());
  }

  new MutationObserver(function () {
    if (!pending) {
      pending = true;
      requestAnimationFrame(sync);
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
