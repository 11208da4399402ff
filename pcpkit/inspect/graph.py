"""
The graph of live parts as plain data: what ``/graph.json`` serves.

:class:`Inspector` walks the registered parts (:mod:`pcpkit.inspect.parts`) when asked
and returns a JSON-ready dict (the contract is in ``docs/inspect.rst``):

* ``components``, ``boxes`` (length, limit, low watermark, parking or Axon bound, messages
  in and out, time spent full), ``links``, ``parked`` (senders parked on or waiting for a
  full box, producers paused by one);
* ``producers``: the byte-level parts (bridges, proxies, relay directions, torrent streams)
  with their level, watermarks and paused state;
* ``nodes`` and ``edges``: the same, shaped for drawing (an edge carries the fill of the box
  or buffer it goes through);
* ``waitsOn``: for each parked sender or paused producer, the chain of parts to the *root
  blocker* -- the component or transport that is not draining -- and whether a box on the
  way has been full longer than ``fullThreshold`` seconds.

Time spent full is *sampled*: each :meth:`Inspector.snapshot` (and each tick of a server,
10 times a second while someone watches) looks at every box; an interval between two
samples that both found a box full counts as full. It is a lower bound, good to a tick.
Nothing is counted per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from pcpkit.bridge import InboxConsumer, OutboxProducer
from pcpkit.component import Box, Component
from pcpkit.inspect.parts import Registry, registry
from pcpkit.pcp import BasicProducerConsumerProxy

__all__ = ["DEFAULT_FULL_THRESHOLD", "Inspector", "formatWaitsOn"]

#: Seconds a box or buffer may stay full before it is flagged ``stuck``.
DEFAULT_FULL_THRESHOLD = 5.0


def _children(c: Any) -> list[Any]:
    return list(getattr(c, "children", ()) or ())


def _label(obj: object, limit: int = 60) -> str:
    if isinstance(obj, Component):
        text = str(obj)
    else:
        text = type(obj).__name__
        peer = _address(obj, "getPeer")
        if peer is not None:
            text = f"{text} to {peer}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _address(obj: object, which: str) -> str | None:
    get = getattr(obj, which, None)
    if get is None:
        return None
    try:
        addr = get()
        return f"{addr.host}:{addr.port}"
    except Exception:
        return None


class _FullClock:
    """Sampled time-full bookkeeping for one box or buffer."""

    __slots__ = ("since", "total", "last", "seen")

    def __init__(self) -> None:
        self.since: float | None = None
        self.total = 0.0
        self.last = 0.0
        self.seen = 0.0

    def sample(self, full: bool, now: float) -> None:
        if full:
            if self.since is None:
                self.since = now
            else:
                self.total += now - self.last
        else:
            self.since = None
        self.last = self.seen = now

    def fullFor(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


class Inspector:
    """
    Builds snapshots of the parts in ``registry`` (the process's by default).

    ``fullThreshold``: seconds full before a box (or byte buffer) is flagged ``stuck``.
    ``clock``: where time comes from (``time.monotonic``), so a test can drive it.
    """

    def __init__(
        self,
        reg: Registry | None = None,
        fullThreshold: float = DEFAULT_FULL_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = reg if reg is not None else registry
        self.fullThreshold = fullThreshold
        self.clock = clock
        self._full: dict[str, _FullClock] = {}
        self.ticks = 0

    # -- ids ------------------------------------------------------------------------------

    @staticmethod
    def idOf(obj: object) -> str:
        if isinstance(obj, Component):
            return f"c{obj.id}"
        return f"o{id(obj):x}"

    def boxId(self, box: Box) -> str:
        return f"{self.idOf(box.owner)}.{'in' if box.isInbox else 'out'}.{box.name}"

    # -- the walk -------------------------------------------------------------------------

    def _liveComponents(self, roots: Iterable[Any] | None) -> list[Any]:
        seen: dict[int, Any] = {}

        def visit(c: Any, follow: bool) -> None:
            if id(c) in seen or c._isStopped():
                return
            seen[id(c)] = c
            for child in _children(c):
                visit(child, follow)
            if follow:
                # what it sends into, one hop out of the given tree
                for box in c.outboxes.values():
                    owner = box.final.owner
                    if isinstance(owner, Component):
                        visit(owner, False)

        if roots is None:
            for c in list(self.registry.components):
                visit(c, False)
        else:
            for c in roots:
                visit(c, True)
        return sorted(seen.values(), key=lambda c: c.id)

    def snapshot(self, roots: Iterable[Any] | None = None) -> dict[str, Any]:
        """
        The graph now, as JSON-ready data (and one sample of every box's fill).

        ``roots``: only these components, their descendants and the components they send
        into (found by walking, so this works with the registry off); the byte-level parts
        come from the registry either way.
        """
        now = self.clock()
        self.ticks += 1
        g = _Graph(self, now)
        comps = self._liveComponents(roots)
        parents: dict[int, str] = {}
        for c in comps:
            for child in _children(c):
                parents[id(child)] = self.idOf(c)
        for c in comps:
            g.addComponent(c, parents.get(id(c)))
        for b in list(self.registry.bridges):
            g.addBridge(b)
        for p in list(self.registry.proxies):
            g.addProxy(p)
        for r in list(self.registry.relays):
            g.addRelay(r)
        for s in list(self.registry.streams):
            g.addStream(s)
        g.finishEdges()
        result = g.result()
        # forget the clocks of what is gone
        for key in [k for k, v in self._full.items() if v.seen != now]:
            del self._full[key]
        return result

    def fullClock(self, key: str, full: bool, now: float) -> tuple[float, float]:
        clock = self._full.get(key)
        if clock is None:
            clock = self._full[key] = _FullClock()
        clock.sample(full, now)
        return clock.total, clock.fullFor(now)


class _Graph:
    """One snapshot under construction."""

    def __init__(self, inspector: Inspector, now: float) -> None:
        self.i = inspector
        self.now = now
        self.components: list[dict[str, Any]] = []
        self.boxes: dict[str, dict[str, Any]] = {}
        self.links: list[dict[str, Any]] = []
        self.producers: list[dict[str, Any]] = []
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, Any]] = []
        self.parked: list[dict[str, Any]] = []
        # party id -> (the id it waits on, why)
        self.blockedBy: dict[str, tuple[str, str]] = {}
        self.rootWhy: dict[str, str] = {}
        self.boxObjects: list[Box] = []
        self.stuckIds: set[str] = set()
        # "client:HOST:PORT" of a relayed connection -> its node: a transport of this process
        # connected to a relay of this process is the same connection
        self.relayEnds: dict[str, str] = {}
        self.transports: dict[str, object] = {}

    # -- nodes ----------------------------------------------------------------------------

    def node(self, obj: object, kind: str, **extra: Any) -> str:
        nid = self.i.idOf(obj)
        if kind == "transport":
            self.transports[nid] = obj
        if nid not in self.nodes:
            self.nodes[nid] = {
                "id": nid,
                "label": _label(obj),
                "kind": kind,
                "group": None,
                "state": "",
                **extra,
            }
        return nid

    def addBox(self, box: Box) -> dict[str, Any]:
        bid = self.i.boxId(box)
        if bid in self.boxes:
            return self.boxes[bid]
        n = len(box)
        limit = box.maxsize
        full = limit is not None and n >= limit
        fullSeconds, fullFor = self.i.fullClock(bid, full, self.now)
        stuck = full and fullFor >= self.i.fullThreshold
        if stuck:
            self.stuckIds.add(bid)
        waiters = []
        for w in list(box.waiters):
            party = getattr(w, "__self__", None)
            if party is not None:
                waiters.append(self.i.idOf(party))
        info = {
            "id": bid,
            "owner": self.i.idOf(box.owner),
            "name": box.name,
            "direction": "in" if box.isInbox else "out",
            "length": n,
            "limit": limit,
            "low": box.low,
            "parking": box.parking,
            "putCount": box.putCount,
            "taken": box.putCount - n if box.isInbox else None,
            "fill": (n / limit) if limit else 0.0,
            "full": full,
            "fullSeconds": round(fullSeconds, 3),
            "fullFor": round(fullFor, 3),
            "stuck": stuck,
            "final": self.i.boxId(box.final),
            "waiters": waiters,
        }
        self.boxes[bid] = info
        self.boxObjects.append(box)
        return info

    def addComponent(self, c: Any, parent: str | None) -> None:
        cid = self.i.idOf(c)
        children = _children(c)
        threaded = hasattr(c, "queuelengths") and hasattr(c, "stopping")
        kind = "chassis" if children else "threaded" if threaded else "component"
        parkedOn = getattr(c, "_parkedOn", None)
        if parkedOn is not None:
            state = "parked"
        elif threaded:
            state = "thread"
        elif not getattr(c, "_active", True):
            state = "new"
        elif getattr(c, "_queued", False):
            state = "runnable"
        else:
            state = "idle"
        inboxes = [self.addBox(b) for b in c.inboxes.values()]
        outboxes = [self.addBox(b) for b in c.outboxes.values()]
        self.components.append(
            {
                "id": cid,
                "name": str(c),
                "type": f"{type(c).__module__}.{type(c).__qualname__}",
                "kind": kind,
                "parent": parent,
                "children": [self.i.idOf(ch) for ch in children],
                "state": state,
                "parkedOn": None if parkedOn is None else self.i.boxId(parkedOn),
                "inboxes": [b["id"] for b in inboxes],
                "outboxes": [b["id"] for b in outboxes],
                "messagesIn": sum(b["putCount"] for b in inboxes),
                "messagesTaken": sum(b["taken"] or 0 for b in inboxes),
            }
        )
        self.node(c, kind, group=parent, state=state, type=type(c).__name__)
        self.nodes[cid].update(group=parent, state=state)
        for lk in list(getattr(c, "postoffice", ())):
            self.links.append(
                {
                    "from": self.i.boxId(lk.source),
                    "to": self.i.boxId(lk.sink),
                    "passthrough": lk.passthrough,
                    "final": self.i.boxId(lk.sink.final),
                    "creator": cid,
                }
            )
        waits = getattr(c, "inspectWaitsOn", None)
        blocker = waits() if callable(waits) else None
        if blocker is not None:
            # a component that knows what holds it back (a TCP client and its socket)
            tid = self.node(blocker[0], "transport")
            self.blockedBy[cid] = (tid, blocker[1])
            self.rootWhy.setdefault(tid, "not draining: the peer reads slowly")
        if kind != "chassis":
            for ob in c.outboxes.values():
                dest = ob.final
                if dest.isInbox and dest.owner is not c:
                    self._boxEdge(cid, ob, dest)

    def _boxEdge(self, src: str, outbox: Box | None, dest: Box) -> None:
        info = self.addBox(dest)
        ownerId = self.i.idOf(dest.owner)
        control = dest.name == "control" or (outbox is not None and outbox.name == "signal")
        self.edges.append(
            {
                "id": f"{src}>{info['id']}",
                "from": src,
                "to": ownerId,
                "box": info["id"],
                "label": dest.name,
                "level": info["length"],
                "limit": info["limit"],
                "fill": info["fill"],
                "paused": False,
                "stuck": info["stuck"],
                "kind": "control" if control else "data",
            }
        )

    # -- byte level -----------------------------------------------------------------------

    def _producer(
        self, obj: object, kind: str, nid: str | None = None, **info: Any
    ) -> dict[str, Any]:
        pid = nid or self.node(obj, kind, state="paused" if info.get("paused") else "")
        level, high = info.get("level"), info.get("high")
        full = bool(high) and level is not None and level >= high
        fullSeconds, fullFor = self.i.fullClock(pid, full, self.now)
        stuck = full and fullFor >= self.i.fullThreshold
        if stuck:
            self.stuckIds.add(pid)
        entry = {
            "id": pid,
            "kind": kind,
            "label": _label(obj),
            **info,
            "fullSeconds": round(fullSeconds, 3),
            "fullFor": round(fullFor, 3),
            "stuck": stuck,
        }
        self.producers.append(entry)
        return entry

    def _byteEdge(
        self, src: str, dst: str, label: str, level: int | None, high: int | None, paused: bool
    ) -> None:
        self.edges.append(
            {
                "id": f"{src}>{dst}",
                "from": src,
                "to": dst,
                "box": None,
                "label": label,
                "level": level,
                "limit": high,
                "fill": (level / high) if high and level is not None else 0.0,
                "paused": paused,
                "stuck": False,
                "kind": "bytes",
            }
        )

    def addBridge(self, b: Any) -> None:
        if isinstance(b, InboxConsumer):
            box = b.component.inboxes.get(b.boxname) or b.component.outboxes.get(b.boxname)
            final = None if box is None else box.final
            level = len(final) if final is not None else 0
            e = self._producer(
                b,
                "InboxConsumer",
                paused=b.producerPaused,
                level=level,
                high=b.highWatermark,
                low=b.watermark.low,
                pauses=b.pauses,
                box=None if final is None else self.i.boxId(final),
            )
            if final is not None and final.isInbox and not final.owner._isStopped():
                self._boxEdge(e["id"], None, final)
            if b.producer is not None:
                pid = self.node(b.producer, "transport")
                self._byteEdge(pid, e["id"], "writes", None, None, b.producerPaused)
                if b.producerPaused:
                    self.blockedBy[pid] = (e["id"], "paused: the inbox it writes into is full")
                    self.parked.append({"sender": pid, "box": e["box"], "how": "paused"})
        elif isinstance(b, OutboxProducer):
            if b.stopped:
                return
            sink = b.sink
            e = self._producer(
                b,
                "OutboxProducer",
                paused=b.paused,
                level=len(sink),
                high=sink.maxsize,
                low=sink.low,
                pauses=b.pauses,
                box=self.i.boxId(sink),
            )
            self.addBox(sink)
            if b.consumer is not None:
                cid = self.node(b.consumer, "transport")
                self._byteEdge(e["id"], cid, "writes", None, None, b.paused)
                if b.paused:
                    self.blockedBy[e["id"]] = (cid, "paused by its consumer")
                    self.rootWhy.setdefault(cid, "not draining: it has its producer paused")

    def addProxy(self, p: BasicProducerConsumerProxy) -> None:
        if p.stopped and p.consumer is None:
            return
        high = getattr(p, "highWatermark", None)
        e = self._producer(
            p,
            type(p).__name__,
            paused=p.paused,
            producerPaused=p.producerPaused,
            level=p.bufferedBytes,
            high=high,
            low=getattr(p, "lowWatermark", None),
        )
        if p.producer is not None:
            pid = self.node(p.producer, "transport")
            self._byteEdge(pid, e["id"], "writes", None, None, p.producerPaused)
            if p.producerPaused:
                why = "paused by the proxy" + (
                    f" ({p.bufferedBytes} bytes buffered, high watermark {high})"
                    if high is not None
                    else ""
                )
                self.blockedBy[pid] = (e["id"], why)
        if p.consumer is not None:
            cid = self.node(p.consumer, "transport")
            self._byteEdge(e["id"], cid, "buffer", p.bufferedBytes, high, p.paused)
            if p.paused:
                self.blockedBy[e["id"]] = (cid, "paused by its consumer")
                self.rootWhy.setdefault(cid, "not draining: it has its producer paused")

    def addRelay(self, r: Any) -> None:
        rid = self.node(r, "relay", label=_label(r))
        self.nodes[rid]["label"] = f"Relay {r.listenDescription} → {r.connectDescription}"
        for conn in r.connections:
            st = conn.inspectState()
            cid = self.node(conn, "relayConnection", group=rid)
            self.nodes[cid].update(group=rid, state=st["state"])
            ends = {}
            for end in ("client", "target"):
                eid = f"{cid}.{end}"
                self.nodes.setdefault(
                    eid,
                    {
                        "id": eid,
                        "label": f"{end} {st[end] or '(gone)'}",
                        "kind": "peer",
                        "group": None,
                        "state": "",
                    },
                )
                ends[end] = eid
                if st[end]:
                    self.relayEnds[f"{end}:{st[end]}"] = eid
            for direction, flow, src, dst in (
                ("toTarget", conn.toTarget, "client", "target"),
                ("toClient", conn.toClient, "target", "client"),
            ):
                paused = flow.paused
                self._producer(
                    conn,
                    "relayDirection",
                    nid=f"{cid}.{direction}",
                    name=f"{src} → {dst}",
                    connection=cid,
                    direction=direction,
                    paused=paused,
                    level=flow.buffered,
                    high=r.bufferSize,
                    bytes=flow.bytes,
                    pauses=flow.pauses,
                    peakBuffered=flow.peakBuffered,
                    spliced=st["spliced"],
                )
                # from the end that writes into the relay: both peers feed the connection
                self._byteEdge(
                    ends[src],
                    cid,
                    direction,
                    flow.buffered,
                    r.bufferSize,
                    paused,
                )
                if paused:
                    self.blockedBy[ends[src]] = (
                        ends[dst],
                        f"reading paused: the relay holds {flow.buffered} bytes for the {dst}",
                    )
                    self.rootWhy.setdefault(ends[dst], f"the {dst} is not reading")

    def addStream(self, s: Any) -> None:
        st = s.inspectState()
        if st["over"]:
            return
        e = self._producer(
            s,
            "TorrentFileProducer",
            level=st["piecesInFlight"] + st["piecesAhead"],
            high=st["window"],
            **{k: v for k, v in st.items() if k != "over"},
        )
        if s.consumer is not None:
            cid = self.node(s.consumer, "transport")
            self._byteEdge(e["id"], cid, "pieces", e["level"], st["window"], st["paused"])
            if st["paused"]:
                self.blockedBy[e["id"]] = (cid, "paused by its consumer")
                self.rootWhy.setdefault(cid, "not draining: it has its producer paused")

    # -- waits-on -------------------------------------------------------------------------

    def finishEdges(self) -> None:
        for box in self.boxObjects:
            if not box.waiters or len(box) <= box.low:
                continue
            stopped = getattr(box.owner, "_isStopped", None)
            owner = self.node(
                box.owner, "component", state="finished" if stopped and stopped() else ""
            )
            bid = self.i.boxId(box)
            for w in list(box.waiters):
                party = getattr(w, "__self__", None)
                if party is None or isinstance(party, Box):
                    continue
                pid = self.i.idOf(party)
                if pid == owner:
                    continue
                self.node(party, "component")
                how = "parked" if getattr(party, "_parkedOn", None) is box else "waiting"
                if isinstance(party, InboxConsumer):
                    how = "paused"
                self.parked.append({"sender": pid, "box": bid, "how": how})
                self.blockedBy.setdefault(
                    pid,
                    (
                        owner,
                        f"{how} on {box.name!r} of {_label(box.owner)} "
                        f"({len(box)} of {box.maxsize})",
                    ),
                )
        for tid, transport in self.transports.items():
            end = self.relayEnds.get(f"client:{_address(transport, 'getHost')}")
            if end is not None and end in self.blockedBy and tid not in self.blockedBy:
                self.blockedBy[tid] = (end, "a connection into this process's relay")
        for nid in list(self.blockedBy):
            if nid not in self.nodes:
                self.nodes[nid] = {"id": nid, "label": nid, "kind": "other", "group": None}

    def _rootReason(self, nid: str) -> str:
        if nid in self.rootWhy:
            return self.rootWhy[nid]
        node = self.nodes.get(nid, {})
        state = node.get("state")
        if state == "thread":
            return "a thread that is not reading its inbox"
        if state == "runnable":
            return "busy: running, and not keeping up"
        if state == "idle":
            return "idle but not reading the box it is sent to"
        if state == "new":
            return "never activated"
        if state == "finished":
            return "finished: nothing will drain what is left for it"
        kind = node.get("kind")
        if kind in ("transport", "peer"):
            return "not draining"
        return "not draining"

    def waitsOn(self) -> list[dict[str, Any]]:
        # One pass over the edges, then each step of each chain is a lookup: a long parked
        # pipeline has a chain per stage, each as long as the rest of the pipeline.
        boxesBetween: dict[tuple[str, str], list[str]] = {}
        for e in self.edges:
            if e["box"] is not None:
                boxesBetween.setdefault((e["from"], e["to"]), []).append(e["box"])
        stuckIds = self.stuckIds
        stuckStep = {
            cur: cur in stuckIds or any(b in stuckIds for b in boxesBetween.get((cur, nxt), ()))
            for cur, (nxt, _) in self.blockedBy.items()
        }
        out = []
        for start in sorted(self.blockedBy):
            chain = [{"id": start, "label": self.nodes.get(start, {}).get("label", start)}]
            seen = {start}
            cur = start
            stuck = False
            while cur in self.blockedBy:
                nxt, why = self.blockedBy[cur]
                chain[-1]["why"] = why
                stuck = stuck or stuckStep[cur]
                if nxt in seen:
                    chain.append({"id": nxt, "label": self.nodes[nxt]["label"], "cycle": True})
                    break
                seen.add(nxt)
                chain.append({"id": nxt, "label": self.nodes.get(nxt, {}).get("label", nxt)})
                cur = nxt
            root = chain[-1]
            root.setdefault("why", self._rootReason(root["id"]))
            if root["id"] in stuckIds:
                stuck = True
            out.append({"waiter": start, "root": root["id"], "chain": chain, "stuck": stuck})
        # the longest chains first: they explain the most
        out.sort(key=lambda w: -len(w["chain"]))
        return out

    def result(self) -> dict[str, Any]:
        waits = self.waitsOn()
        return {
            "version": 1,
            "time": time.time(),
            "tick": self.i.ticks,
            "fullThreshold": self.i.fullThreshold,
            "components": self.components,
            "boxes": self.boxes,
            "links": self.links,
            "parked": self.parked,
            "producers": self.producers,
            "nodes": list(self.nodes.values()),
            "edges": self.edges,
            "waitsOn": waits,
            "stuck": sorted(self.stuckIds),
        }


def formatWaitsOn(graph: dict[str, Any]) -> str:
    """The ``waitsOn`` part of a snapshot as text lines (for logs and test failures)."""
    lines = []
    for w in graph["waitsOn"]:
        parts = []
        for step in w["chain"]:
            parts.append(f"{step['label']} ({step.get('why', '')})")
        flag = "  [STUCK]" if w["stuck"] else ""
        lines.append(" -> ".join(parts) + flag)
    for bid in graph["stuck"]:
        if bid in graph["boxes"]:
            b = graph["boxes"][bid]
            lines.append(f"full for {b['fullFor']:.1f}s: {bid} ({b['length']} of {b['limit']})")
    return "\n".join(lines) if lines else "nothing waits on anything"
