// flagd-rs dashboard: live updates over server-sent events. Pages work without this script;
// it only keeps an open page current. On the Flags page each changed row is replaced by the
// server's rendering of it; other pages redraw their main part when something changed.
(function () {
  "use strict";
  var mode = document.body.getAttribute("data-live");
  var status = document.getElementById("live-status");
  if (!mode || !window.EventSource) return;

  function say(text) { if (status) status.textContent = "· " + text; }

  var url = "/ui/events" + (mode === "rows" ? window.location.search : "");
  var source = new EventSource(url);
  source.onopen = function () { say("live"); };
  source.onerror = function () { say("reconnecting…"); };
  source.addEventListener("reload", function () { window.location.reload(); });

  function rowFrom(html) {
    var table = document.createElement("table");
    table.innerHTML = "<tbody>" + html + "</tbody>";
    return table.querySelector("tr");
  }

  if (mode === "rows") {
    source.addEventListener("row", function (e) {
      var data = JSON.parse(e.data);
      var old = document.getElementById(data.id);
      if (data.html === null) {
        if (old) old.remove();
        return;
      }
      var row = rowFrom(data.html);
      if (!row) return;
      if (old) {
        old.replaceWith(row);
      } else {
        var body = document.querySelector("#flags tbody");
        if (body) body.appendChild(row);
      }
      row.classList.add("flash");
      window.setTimeout(function () { row.classList.remove("flash"); }, 1500);
      say("updated " + new Date().toLocaleTimeString());
    });
  }

  if (mode === "page") {
    var waiting = false;
    var redraw = function () {
      waiting = false;
      // Never replace a form the operator is filling in.
      var active = document.activeElement;
      if (active && active.closest && active.closest("main form")) return;
      fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("main");
          var main = document.getElementById("main");
          if (fresh && main) main.replaceWith(fresh);
          say("updated " + new Date().toLocaleTimeString());
        })
        .catch(function () { say("reconnecting…"); });
    };
    source.addEventListener("changed", function () {
      if (waiting) return;
      waiting = true;
      window.setTimeout(redraw, 150);
    });
  }
})();
