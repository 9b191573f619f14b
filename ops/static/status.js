// Live updates for the msprelay status page: the who table and the rates
// follow /api/v1/events. Without JavaScript the page shows what the server
// rendered.
"use strict";
(function () {
  if (!window.EventSource) { return; }
  var live = document.getElementById("live");
  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  function idle(last) {
    if (!last) { return ""; }
    var s = Math.max(0, Math.round((Date.now() - Date.parse(last)) / 1000));
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m" + (s % 60) + "s"; }
    return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  }
  function renderWho(list) {
    var body = document.querySelector("#who tbody");
    var rows = document.createDocumentFragment();
    list.forEach(function (e) {
      var tr = document.createElement("tr");
      tr.dataset.user = e.user;
      cell(tr, e.user); cell(tr, e.node); cell(tr, e.term); cell(tr, e.state); cell(tr, idle(e.last_active));
      rows.appendChild(tr);
    });
    if (list.length === 0) {
      var tr = document.createElement("tr");
      tr.className = "empty";
      var td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = "nobody is signed in";
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
  }
  function renderRates(r) {
    document.querySelectorAll("#rates tr[data-outcome]").forEach(function (tr) {
      var k = tr.dataset.outcome;
      tr.querySelector(".m1").textContent = (r.last_minute && r.last_minute[k]) || 0;
      tr.querySelector(".m5").textContent = (r.last_five_minutes && r.last_five_minutes[k]) || 0;
    });
  }
  var es = new EventSource("/api/v1/events");
  es.addEventListener("open", function () { live.textContent = "live"; live.className = "live on"; });
  es.addEventListener("error", function () { live.textContent = "reconnecting"; live.className = "live"; });
  es.addEventListener("who", function (ev) { renderWho(JSON.parse(ev.data)); });
  es.addEventListener("rates", function (ev) { renderRates(JSON.parse(ev.data)); });
})();
