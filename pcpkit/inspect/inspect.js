// pcpkit inspector page: draws /events' graph snapshots as SVG. Plain JS, no build step.
"use strict";
(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const NODE_W = 160, NODE_H = 44, COL_W = 300, ROW_H = 96, MARGIN = 36, BAR_W = 64;
  const svg = document.getElementById("graph");
  const statusEl = document.getElementById("status");
  const summaryEl = document.getElementById("summary");
  const waitsEl = document.getElementById("waits");
  const detailsEl = document.getElementById("details");
  let graph = null, selectedNode = null, selectedChain = 0;
  window.pcpkitUpdates = 0;

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function fillClass(f) { return f < 0.6 ? "fill-green" : f < 0.85 ? "fill-yellow" : "fill-red"; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  // The edges minus those closing a cycle (found by a depth-first walk from the sources).
  function acyclic(nodes, edges) {
    const out = {}, incoming = {}, state = {}, keep = [];
    nodes.forEach((n) => { out[n.id] = []; incoming[n.id] = 0; });
    edges.forEach((e) => {
      if (e.from in out && e.to in out && e.from !== e.to) { out[e.from].push(e); incoming[e.to] += 1; }
    });
    function walk(u) {
      state[u] = 1;
      for (const e of out[u]) {
        if (state[e.to] === 1) continue; // a back edge
        keep.push(e);
        if (!state[e.to]) walk(e.to);
      }
      state[u] = 2;
    }
    nodes.filter((n) => !incoming[n.id]).concat(nodes).forEach((n) => { if (!state[n.id]) walk(n.id); });
    return keep;
  }

  // Layers: the longest path from a source along the edges.
  function layout(nodes, allEdges) {
    const edges = acyclic(nodes, allEdges);
    const layer = {};
    nodes.forEach((n) => { layer[n.id] = 0; });
    for (let round = 0; round < nodes.length; round++) {
      let changed = false;
      for (const e of edges) {
        if (e.from in layer && e.to in layer && e.from !== e.to && layer[e.to] < layer[e.from] + 1) {
          layer[e.to] = layer[e.from] + 1; changed = true;
        }
      }
      if (!changed) break;
    }
    const cols = {};
    nodes.forEach((n) => { (cols[layer[n.id]] = cols[layer[n.id]] || []).push(n); });
    const pos = {};
    Object.keys(cols).forEach((c) => {
      cols[c].sort((a, b) => String(a.group).localeCompare(String(b.group)));
      cols[c].forEach((n, i) => {
        pos[n.id] = { x: MARGIN + 24 + c * COL_W, y: MARGIN + 30 + i * ROW_H };
      });
    });
    return pos;
  }

  function render() {
    if (!graph) return;
    const groups = {}, groupParent = {};
    graph.components.forEach((c) => {
      if (c.kind === "chassis") { groups[c.id] = c.name; groupParent[c.id] = c.parent; }
    });
    graph.nodes.forEach((n) => { if (n.kind === "relay") { groups[n.id] = n.label; groupParent[n.id] = null; } });
    const nodes = graph.nodes.filter((n) => !(n.id in groups));
    const ids = new Set(nodes.map((n) => n.id));
    const edges = graph.edges.filter((e) => ids.has(e.from) && ids.has(e.to));
    const pos = layout(nodes, edges.filter((e) => e.kind !== "control"));
    const chain = graph.waitsOn[selectedChain] || graph.waitsOn[0];
    const chainIds = chain ? chain.chain.map((s) => s.id) : [];
    const chainSteps = new Set();
    for (let i = 0; i + 1 < chainIds.length; i++) chainSteps.add(chainIds[i] + ">" + chainIds[i + 1]);
    const roots = new Set(graph.waitsOn.map((w) => w.root));

    while (svg.firstChild) svg.removeChild(svg.firstChild);
    let maxX = 400, maxY = 200;
    nodes.forEach((n) => {
      const p = pos[n.id];
      maxX = Math.max(maxX, p.x + NODE_W + MARGIN); maxY = Math.max(maxY, p.y + NODE_H + MARGIN);
    });
    svg.setAttribute("width", maxX); svg.setAttribute("height", maxY);

    // chassis (and relays) as groups: the box around their descendants, deepest last
    const depth = (g) => { let d = 0; while (groupParent[g]) { g = groupParent[g]; d++; } return d; };
    const inGroup = (n, g) => { let x = n.group; while (x) { if (x === g) return true; x = groupParent[x]; } return false; };
    const gLayer = el("g", { class: "groups" }, svg);
    Object.keys(groups).sort((a, b) => depth(a) - depth(b)).forEach((g) => {
      const members = nodes.filter((n) => inGroup(n, g));
      if (!members.length) return;
      const pad = 18 - 5 * Math.min(depth(g), 2);
      const xs = members.map((n) => pos[n.id].x), ys = members.map((n) => pos[n.id].y);
      const x = Math.min(...xs) - pad, y = Math.min(...ys) - pad - 12;
      const w = Math.max(...xs) + NODE_W + pad - x, h = Math.max(...ys) + NODE_H + pad - y;
      const ge = el("g", { class: "group", "data-id": g }, gLayer);
      el("rect", { x, y, width: w, height: h, rx: 10 }, ge);
      el("text", { x: x + 8, y: y + 13 }, ge).textContent = groups[g];
    });

    const eLayer = el("g", { class: "edges" }, svg);
    edges.forEach((e) => {
      const a = pos[e.from], b = pos[e.to];
      const onChain = chainSteps.has(e.from + ">" + e.to);
      const cls = ["edge", "kind-" + e.kind];
      if (e.paused) cls.push("paused");
      if (onChain) cls.push("chain");
      const ge = el("g", {
        class: cls.join(" "), "data-id": e.id, "data-from": e.from, "data-to": e.to,
        "data-fill": e.fill.toFixed(3), "data-level": e.level === null ? "" : e.level,
        "data-limit": e.limit === null ? "" : e.limit, "data-paused": e.paused ? "1" : "0",
      }, eLayer);
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2 + (e.kind === "control" ? 12 : 0);
      const x2 = b.x, y2 = b.y + NODE_H / 2 + (e.kind === "control" ? 12 : 0);
      const back = x2 <= x1;
      const c = back ? 60 : Math.max(30, (x2 - x1) / 2);
      const d = back
        ? `M${x1},${y1} C${x1 + c},${y1 + 70} ${x2 - c},${y2 + 70} ${x2},${y2}`
        : `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2},${y2}`;
      el("path", { d, "marker-end": "url(#arrow)" }, ge);
      if (e.kind === "control" && !e.level) return;
      const mx = (x1 + x2) / 2 - BAR_W / 2, my = (y1 + y2) / 2 + (back ? 52 : 0) - 16;
      if (e.limit) {
        el("rect", { class: "bar-bg", x: mx, y: my, width: BAR_W, height: 9 }, ge);
        el("rect", {
          class: "bar-fill " + fillClass(e.fill), x: mx, y: my,
          width: Math.max(1, Math.min(1, e.fill) * BAR_W), height: 9,
        }, ge);
      }
      const lab = el("text", { class: "label", x: mx, y: my - 4 }, ge);
      lab.textContent = e.label + (e.limit ? ` ${e.level}/${e.limit}` : e.level ? ` ${e.level}` : "");
      if (e.paused) {
        // two bars: "paused", drawn rather than a glyph the fonts may lack
        el("rect", { class: "pausemark", x: mx + BAR_W + 5, y: my - 1, width: 3, height: 11 }, ge);
        el("rect", { class: "pausemark", x: mx + BAR_W + 10, y: my - 1, width: 3, height: 11 }, ge);
      }
    });
    const defs = el("defs", {}, svg);
    const m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#78909c" }, m);

    const nLayer = el("g", { class: "nodes" }, svg);
    nodes.forEach((n) => {
      const p = pos[n.id];
      const cls = ["node", "kind-" + n.kind, "state-" + (n.state || "none")];
      if (roots.has(n.id)) cls.push("root");
      if (chainIds.includes(n.id)) cls.push("on-chain");
      if (n.id === selectedNode) cls.push("selected");
      const g = el("g", { class: cls.join(" "), "data-id": n.id, "data-state": n.state || "", transform: `translate(${p.x},${p.y})` }, nLayer);
      el("rect", { width: NODE_W, height: NODE_H, rx: 6 }, g);
      const name = el("text", { x: 8, y: 17 }, g);
      name.textContent = n.label.length > 27 ? n.label.slice(0, 26) + "…" : n.label;
      el("title", {}, g).textContent = n.label;
      el("text", { class: "sub", x: 8, y: 33 }, g).textContent = (n.type || n.kind) + (n.state ? " · " + n.state : "");
      g.addEventListener("click", () => { selectedNode = n.id; render(); });
    });

    summaryEl.textContent = `${graph.components.length} components · ${graph.edges.length} edges · ` +
      `${graph.parked.length} waiting · ${graph.stuck.length} stuck`;
    renderWaits();
    renderDetails();
  }

  function renderWaits() {
    waitsEl.innerHTML = "";
    if (!graph.waitsOn.length) { waitsEl.innerHTML = '<li class="hint">nothing waits on anything</li>'; return; }
    graph.waitsOn.forEach((w, i) => {
      const li = document.createElement("li");
      li.className = (i === selectedChain ? "selected " : "") + (w.stuck ? "stuck" : "");
      li.dataset.root = w.root;
      li.innerHTML = w.chain.map((s) => `<b>${esc(s.label)}</b> <span class="why">${esc(s.why || "")}</span>`).join(" → ");
      li.addEventListener("click", () => { selectedChain = i; render(); });
      waitsEl.appendChild(li);
    });
  }

  function row(k, v) { return `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`; }
  function renderDetails() {
    if (!selectedNode) return;
    const comp = graph.components.find((c) => c.id === selectedNode);
    const prod = graph.producers.filter((p) => p.id === selectedNode || p.connection === selectedNode);
    const node = graph.nodes.find((n) => n.id === selectedNode);
    let h = `<h3>${esc(node ? node.label : selectedNode)}</h3>`;
    if (comp) {
      h += "<table>" + row("type", comp.type) + row("state", comp.state) +
        row("messages in", comp.messagesIn) + row("messages taken", comp.messagesTaken) +
        (comp.parkedOn ? row("parked on", comp.parkedOn) : "") + "</table>";
      h += '<table class="boxes"><tr><th>box</th><th>len</th><th>limit</th><th>low</th><th>in</th><th>out</th><th>full s</th></tr>';
      comp.inboxes.concat(comp.outboxes).forEach((id) => {
        const b = graph.boxes[id];
        h += `<tr data-box="${esc(id)}"><td>${b.direction} ${esc(b.name)}${b.parking ? " (parks)" : ""}</td>` +
          `<td>${b.length}</td><td>${b.limit === null ? "∞" : b.limit}</td><td>${b.low}</td>` +
          `<td>${b.putCount}</td><td>${b.taken === null ? "" : b.taken}</td><td>${b.fullSeconds}</td></tr>`;
      });
      h += "</table>";
    }
    prod.forEach((p) => {
      h += "<table>";
      Object.keys(p).forEach((k) => { if (k !== "id") h += row(k, p[k] === null ? "" : p[k]); });
      h += "</table>";
    });
    detailsEl.innerHTML = h;
  }

  let source = null;
  function connect() {
    source = new EventSource("events");
    source.addEventListener("graph", (ev) => {
      graph = JSON.parse(ev.data);
      window.pcpkitUpdates += 1;
      window.pcpkitGraph = graph;
      statusEl.textContent = "live"; statusEl.className = "status live";
      render();
    });
    source.onopen = () => { statusEl.textContent = "live"; statusEl.className = "status live"; };
    source.onerror = () => {
      statusEl.textContent = "disconnected: retrying"; statusEl.className = "status disconnected";
      // The browser retries a dropped stream itself; one that failed for good is reopened.
      if (source.readyState === EventSource.CLOSED) { source.close(); setTimeout(connect, 1000); }
    };
  }
  connect();
})();
