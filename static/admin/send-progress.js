// Keeps a send page's progress current by polling its JSON twice a second or so.
// Without JavaScript the page refreshes itself (a meta refresh in <noscript>) instead.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || box.hasAttribute("data-finished")) { return; }
  var url = box.getAttribute("data-progress-url");
  var failures = 0;

  function show(name, value) {
    var nodes = box.querySelectorAll('[data-field="' + name + '"]');
    for (var i = 0; i < nodes.length; i++) {
      var text = value === null || value === undefined ? "—" : String(value);
      if (nodes[i].tagName === "PROGRESS") { nodes[i].value = Number(value) || 0; }
      else { nodes[i].textContent = text; }
      if (name === "status") { nodes[i].className = "status " + text; }
    }
  }

  function tick() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (p) {
        failures = 0;
        ["status", "handled", "total", "percent", "pending", "sent", "failed", "bounced",
         "skipped", "unknown", "rate_per_second", "seconds_left"].forEach(function (k) {
          show(k, p[k]);
        });
        show("bar", p.percent);
        if (p.finished) {
          // Done or cancelled: reload once so the controls and results match.
          window.location.reload();
          return;
        }
        window.setTimeout(tick, 1500);
      })
      .catch(function () {
        failures += 1;
        show("live", "Could not update; reload the page to see the latest.");
        if (failures < 5) { window.setTimeout(tick, 5000); }
      });
  }
  window.setTimeout(tick, 1500);
}());
