// The overview draws itself from the status document (the same JSON as `rabbitq status
// --json`): first the one embedded in the page, then /api/status 2 s after the previous
// answer (or failure). Never two requests at once, however slow the broker: the next one is
// scheduled only when the last has finished, and one that takes longer than 10 s is aborted.
// Text goes in through textContent only, never as HTML.
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const TIMEOUT_MS = 10000;
  const root = document.getElementById("overview");
  const flower = root.dataset.flower;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
    }
    return node;
  }
  function link(href, text) { return el("a", { href: href }, text); }
  function table(id, headers, rows, numeric) {
    if (!rows.length) return el("p", { class: "empty" }, "None.");
    const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
    const body = rows.map((cells) => el("tr", {}, ...cells.map((c, i) =>
      el("td", numeric && numeric.includes(i) ? { class: "n" } : {}, c))));
    return el("table", { id: id }, el("thead", {}, head), el("tbody", {}, ...body));
  }
  function fill(id, node) { document.getElementById(id).replaceChildren(node); }
  function rate(value) { return value ? value.toFixed(1) : "0"; }
  function ago(seconds) {
    if (seconds < 60) return Math.max(0, Math.round(seconds)) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }
  function duration(ms) {
    if (ms < 1000) return ms + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s";
    if (ms < 7200000) return Math.round(ms / 60000) + " min";
    if (ms < 172800000) return Math.round(ms / 3600000) + " h";
    return Math.round(ms / 86400000) + " d";
  }
  function tile(label, value, id) {
    return el("div", { class: "tile", id: id }, el("span", { class: "value" }, value), el("span", { class: "label" }, label));
  }
  function deadHref(name) { return "/dead/" + encodeURIComponent(name); }

  function showProblems(problems) {
    const box = document.getElementById("problems");
    box.replaceChildren(...problems.map((p) => el("p", { class: "problem", role: "alert" }, p)));
  }

  function render(doc) {
    if (doc.error) {
      showStale(doc.error);
      return;
    }
    document.getElementById("stale").hidden = true;
    showProblems(doc.problems || []);
    document.getElementById("broker").textContent = doc.broker + " (RabbitMQ " + doc.broker_version + ")";
    document.getElementById("taken-at").textContent = "· " + doc.taken_at;
    const queues = doc.queues.filter((q) => q.role !== "dead" && q.role !== "delay");
    const waiting = doc.queues.filter((q) => q.role === "task").reduce((n, q) => n + q.messages, 0);
    fill("totals", el("div", { class: "tiles" },
      tile("in task queues", waiting, "total-waiting"),
      tile("dead letters", doc.totals.dead_letters, "total-dead"),
      tile("delayed", doc.totals.delayed, "total-delayed"),
      tile("workers online", doc.totals.workers_online, "total-workers")));
    fill("queues", table("queue-table",
      ["queue", "role", "type", "messages", "ready", "unacked", "publish/s", "deliver/s", "consumers"],
      queues.map((q) => [q.name, q.role, q.type, q.messages, q.ready, q.unacked,
        rate(q.publish_rate), rate(q.deliver_rate), q.consumers]), [3, 4, 5, 6, 7, 8]));
    fill("dead-queues", table("dead-table",
      ["dead queue", "from", "messages", "newest reason", "newest task", "exception", "at"],
      doc.dead_queues.map((d) => [link(deadHref(d.name), d.name), d.source, d.messages,
        d.newest ? d.newest.reason : "", d.newest ? d.newest.task : "",
        d.newest ? d.newest.exception : "", d.newest ? d.newest.dead_at.slice(0, 19) : ""]), [2]));
    const now = Date.now() / 1000;
    fill("workers", table("worker-table",
      ["node", "state", "pid", "concurrency", "active", "processed", "load", "software", "last seen"],
      doc.workers.map((w) => [
        flower ? link(flower + "/worker/" + encodeURIComponent(w.hostname), w.hostname) : w.hostname,
        w.online ? "online" : "offline", w.pid ?? "", w.concurrency ?? "", w.active, w.processed,
        w.loadavg.map((x) => x.toFixed(2)).join(" "), w.software, ago(now - w.last_seen)]), [2, 3, 4, 5]));
    const busy = doc.delay_levels.filter((l) => l.messages > 0);
    const levels = el("div", {},
      el("p", { class: "meta" }, doc.totals.delayed + " delayed message(s) in " + doc.delay_levels.length + " level(s); levels holding some:"),
      table("delay-table", ["level", "each waits", "messages"],
        busy.map((l) => [l.level, duration(l.wait_ms), l.messages]), [0, 2]));
    fill("delay-levels", levels);
    const c = doc.chords;
    fill("chords", c ? table("chord-table",
      ["in flight", "parts waiting", "parts held", "coordinator", "dead"],
      [[c.in_flight ?? "unknown (no coordinator heard from)", c.parts_waiting, c.parts_held, c.coordinator ?? "", c.dead]], [1, 2, 4])
      : el("p", { class: "empty" }, "No chord queue."));
    fill("limits", doc.limits.length ? table("limit-table",
      ["limit", "kind", "allows", "tokens", "running", "keys", "waiting", "taken"],
      doc.limits.map((l) => [l.name, l.kind, allows(l.declared), l.tokens ?? "",
        l.kind === "rate" ? "" : l.holders, l.kind === "mutex" ? l.keys : "", l.waiting, l.taken]), [3, 4, 5, 6, 7])
      : el("p", { class: "empty" }, "No global limits."));
    const b = doc.beat;
    fill("beat", b ? el("div", {},
      el("p", { id: "beat-leader" }, b.led
        ? "Leader: " + (b.leader || "unknown") + (b.leader_since ? " since " + b.leader_since : "")
        : "No leader: no rabbitq beat runs for group " + JSON.stringify(b.group) + "."),
      table("beat-table", ["entry", "schedule", "last", "next"],
        b.ticks.map((t) => [t.entry, t.schedule, t.last, t.next ?? ""])))
      : el("p", { class: "empty" }, "No beat."));
  }

  function allows(d) {
    if (!d) return "no worker online declares it";
    if (d.kind === "rate") return d.rate + " burst " + d.burst;
    return d.n + (d.kind === "concurrency" ? " at once" : " per key");
  }

  function showStale(problem) {
    showProblems([problem]);
    document.getElementById("stale").hidden = false;
  }

  // What went wrong, from an answer that is not a 2xx: the server's own words when it sent
  // {"error": ...} (a 503 when the broker cannot be read), else its status line.
  async function failure(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
    } catch (_notJson) { /* a proxy's HTML page, say: fall back to the status */ }
    return "The dashboard answered " + response.status + " " + (response.statusText || "") + ".";
  }

  async function refresh() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await fetch("/api/status", {
        headers: { Accept: "application/json" }, credentials: "same-origin", signal: controller.signal,
      });
      if (response.status === 401) {
        showStale("This dashboard asks for its token again: reload the page to log in.");
      } else if (!response.ok) {
        showStale(await failure(response));
      } else {
        render(await response.json());
      }
    } catch (error) {
      showStale(error.name === "AbortError"
        ? "The dashboard did not answer within " + TIMEOUT_MS / 1000 + " s; trying again."
        : "The dashboard does not answer: " + error.message);
    } finally {
      clearTimeout(timer);
      setTimeout(refresh, REFRESH_MS);
    }
  }

  render(JSON.parse(document.getElementById("initial-status").textContent));
  setTimeout(refresh, REFRESH_MS);
})();
