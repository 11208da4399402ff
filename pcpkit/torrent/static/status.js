// The torrent daemon's web UI: refreshes the rows in place from status.json and drives the
// control API (/api). Only textContent and attributes are set, so a torrent's name can
// never become markup. The API token is pasted once (or opened as /#token=...) and kept in
// this origin's localStorage: the daemon never puts it in a page.
"use strict";
(function () {
  var body = document.body;
  var PERIOD = Number(body.getAttribute("data-period")) || 2;
  var PAGE = Number(body.getAttribute("data-page")) || 100;
  var offset = Number(body.getAttribute("data-offset")) || 0;
  var COLUMNS = document.querySelectorAll("#torrents thead th").length;
  var KEY = "pcpkit-token";
  var PRIORITIES = ["skip", "normal", "high"];
  var total = 0;
  var timer = null;

  // -- the token ---------------------------------------------------------------------------
  function token() {
    try { return window.localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }
  function setToken(value) {
    try {
      if (value) { window.localStorage.setItem(KEY, value); } else { window.localStorage.removeItem(KEY); }
    } catch (e) { /* storage refused: the token lasts as long as the page */ }
    showToken();
  }
  function showToken() {
    document.getElementById("token-state").textContent = token()
      ? "token set: the controls work"
      : "no token: this page can only watch";
  }
  if (window.location.hash.indexOf("#token=") === 0) {
    setToken(decodeURIComponent(window.location.hash.slice(7)));
    // out of the address bar and the history
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  // -- formatting --------------------------------------------------------------------------
  function bytes(n) {
    if (Math.abs(n) < 1000) { return Math.floor(n) + " B"; }
    var units = ["kB", "MB", "GB", "TB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1000;
      if (Math.abs(n) < 1000 || i === units.length - 1) { return n.toFixed(1) + " " + units[i]; }
    }
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function eta(t) {
    if (t.isFinished || t.paused || t.error) { return ""; }
    if (t.timeEst === null || t.timeEst === undefined) { return "\u221e"; }
    var s = Math.floor(t.timeEst);
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + pad(s % 60) + " s"; }
    if (s < 360000) { return Math.floor(s / 3600) + " h " + pad(Math.floor(s % 3600 / 60)) + " min"; }
    return Math.floor(s / 86400) + " d";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function message(text, ok) {
    var m = document.getElementById("message");
    m.textContent = text;
    m.className = ok ? "ok" : "error";
  }

  // -- the API -----------------------------------------------------------------------------
  function api(method, path, payload, contentType) {
    var headers = {"X-Pcpkit-Token": token()};
    if (contentType) { headers["Content-Type"] = contentType; }
    return fetch("api/" + path, {method: method, headers: headers, body: payload, cache: "no-store"})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (!r.ok) { throw new Error(j.error || ("HTTP " + r.status)); }
          return j;
        });
      });
  }
  function act(method, path, payload, contentType, said) {
    if (!token()) {
      message("paste the API token first (the file api-token in the daemon's state folder)", false);
      return Promise.resolve(null);
    }
    return api(method, path, payload, contentType).then(function (j) {
      message(said(j), true);
      refresh();
      return j;
    }, function (e) { message(e.message, false); return null; });
  }
  function button(label, cls, onclick) {
    var b = el("button", cls, label);
    b.type = "button";
    b.addEventListener("click", onclick);
    return b;
  }

  // -- rows --------------------------------------------------------------------------------
  function newRow(t) {
    var tr = el("tr", "torrent");
    tr.id = "t-" + t.infohash;
    tr.setAttribute("data-infohash", t.infohash);
    var name = el("td", "name");
    name.appendChild(el("span", "title"));
    name.appendChild(el("div", "files"));
    tr.appendChild(name);
    var ih = el("td", "infohash");
    ih.appendChild(el("code", null, t.infohash));
    tr.appendChild(ih);
    var progress = el("td", "progress");
    var bar = el("progress");
    bar.max = 1;
    progress.appendChild(bar);
    tr.appendChild(progress);
    ["percent", "down", "up", "peers", "eta", "state", "tracker", "actions"].forEach(function (c) {
      tr.appendChild(el("td", c));
    });
    return tr;
  }
  function fileLine(t, f) {
    var line = el("div", "file");
    var a = el("a", null, f.path + " (" + bytes(f.size) + ")");
    a.href = "stream/" + t.infohash + "/" + f.index;
    a.title = "stream it (plays while it downloads)";
    line.appendChild(a);
    var select = el("select", "priority");
    select.setAttribute("data-index", f.index);
    select.title = "download priority";
    PRIORITIES.forEach(function (p) { select.appendChild(el("option", null, p)); });
    select.addEventListener("change", function () {
      var priorities = {};
      priorities[f.index] = select.value;
      act("POST", "torrents/" + t.infohash + "/files", JSON.stringify({priorities: priorities}),
          "application/json", function () { return f.path + ": " + select.value; });
    });
    line.appendChild(select);
    return line;
  }
  function actions(tr, t) {
    var cell = tr.querySelector(".actions");
    var want = t.paused ? "resume" : "pause";
    if (cell.getAttribute("data-shows") === want) { return; }
    cell.setAttribute("data-shows", want);
    while (cell.firstChild) { cell.removeChild(cell.firstChild); }
    var path = "torrents/" + t.infohash;
    cell.appendChild(button(t.paused ? "Resume" : "Pause", want, function () {
      act("POST", path + "/" + want, null, null, function () {
        return (want === "pause" ? "paused " : "resumed ") + tr.querySelector(".title").textContent;
      });
    }));
    cell.appendChild(button("Recheck", "recheck", function () {
      act("POST", path + "/recheck", null, null, function () {
        return "checking " + tr.querySelector(".title").textContent;
      });
    }));
    cell.appendChild(button("Remove", "remove", function () {
      var title = tr.querySelector(".title").textContent;
      if (!window.confirm("Remove " + title + "? Its downloaded files are kept.")) { return; }
      act("DELETE", path, null, null, function () { return "removed " + title; });
    }));
  }
  function update(tr, t) {
    var percent = (t.fractionDone * 100).toFixed(1) + "%";
    tr.className = "torrent" + (t.paused ? " paused" : "") + (t.error ? " error" : "");
    tr.querySelector(".title").textContent = t.name;
    var files = tr.querySelector(".files");
    if (files.querySelectorAll("select").length !== t.files.length) {
      while (files.firstChild) { files.removeChild(files.firstChild); }
      t.files.forEach(function (f) { files.appendChild(fileLine(t, f)); });
    }
    t.files.forEach(function (f, i) {
      var select = files.querySelectorAll("select")[i];
      if (select && document.activeElement !== select && f.priority) { select.value = f.priority; }
    });
    var bar = tr.querySelector("progress");
    bar.value = t.fractionDone;
    bar.textContent = percent;
    tr.querySelector(".percent").textContent = percent;
    tr.querySelector(".down").textContent = bytes(t.downRate) + "/s";
    tr.querySelector(".up").textContent = bytes(t.upRate) + "/s";
    tr.querySelector(".peers").textContent = t.numPeers + " (" + t.numSeeds + " seeds)";
    tr.querySelector(".eta").textContent = eta(t);
    tr.querySelector(".state").textContent = t.activity;
    tr.querySelector(".tracker").textContent = t.trackerError || "";
    actions(tr, t);
  }
  function render(torrents) {
    var tbody = document.querySelector("#torrents tbody");
    var keep = {};
    torrents.forEach(function (t) {
      if (!/^[0-9a-f]+$/.test(t.infohash)) { return; }
      keep["t-" + t.infohash] = true;
      var tr = document.getElementById("t-" + t.infohash);
      if (!tr) { tr = newRow(t); tbody.appendChild(tr); }
      update(tr, t);
    });
    Array.prototype.slice.call(tbody.rows).forEach(function (tr) {
      if (!keep[tr.id]) { tbody.removeChild(tr); }
    });
    if (!torrents.length) {
      var empty = el("tr", "empty");
      var td = el("td", null, "no torrents");
      td.colSpan = COLUMNS;
      empty.appendChild(td);
      tbody.appendChild(empty);
    }
    document.getElementById("page-shown").textContent = torrents.length
      ? (offset + 1) + "-" + (offset + torrents.length) + " of " + total
      : "0 of " + total;
    document.getElementById("page-prev").disabled = offset === 0;
    document.getElementById("page-next").disabled = offset + PAGE >= total;
    document.getElementById("updated").textContent =
      "(updated " + new Date().toLocaleTimeString() + ")";
  }
  function refresh() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    fetch("status.json?offset=" + offset + "&limit=" + PAGE, {cache: "no-store"})
      .then(function (r) {
        if (!r.ok) { throw new Error(r.status); }
        total = Number(r.headers.get("X-Total-Count")) || 0;
        return r.json();
      })
      .then(render)
      .catch(function () {
        document.getElementById("updated").textContent = "(daemon unreachable)";
      })
      .then(function () {
        if (timer === null) { timer = window.setTimeout(refresh, PERIOD * 1000); }
      });
  }

  // -- forms -------------------------------------------------------------------------------
  document.getElementById("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var input = document.getElementById("token");
    setToken(input.value.trim());
    input.value = "";
  });
  document.getElementById("token-forget").addEventListener("click", function () { setToken(""); });
  document.getElementById("add-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = document.getElementById("add-file");
    var magnet = document.getElementById("add-magnet");
    var added = function (j) { file.value = ""; magnet.value = ""; return "added " + j.name; };
    if (file.files && file.files.length) {
      file.files[0].arrayBuffer().then(function (data) {
        act("POST", "torrents", data, "application/x-bittorrent", added);
      });
    } else if (magnet.value.trim()) {
      act("POST", "torrents", JSON.stringify({magnet: magnet.value.trim()}), "application/json", added);
    } else {
      message("choose a .torrent file or paste a magnet link", false);
    }
  });
  document.getElementById("page-prev").addEventListener("click", function () {
    offset = Math.max(0, offset - PAGE);
    refresh();
  });
  document.getElementById("page-next").addEventListener("click", function () {
    if (offset + PAGE < total) { offset += PAGE; refresh(); }
  });

  showToken();
  refresh();
})();
