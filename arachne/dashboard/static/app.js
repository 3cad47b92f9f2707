/* Arachne console: live figures, charts and operator actions, without reloading pages.
 *
 * The pages are rendered on the server; this script only keeps them current. It follows
 * data attributes in the markup and writes text with textContent, never HTML, so nothing a
 * crawl recorded (URLs, hosts, errors) can become markup. No inline script: the CSP allows
 * scripts from this origin only.
 *
 *   data-poll="URL" data-interval=ms [data-idle=ms]   poll JSON, update what is inside
 *   data-bind="a.b" [data-fmt]     text of the element (or of its .v / .badge child);
 *                                  data-alert: marked while the value is above 0
 *   data-show="a.b" / data-hide    shown while the value is truthy / falsy
 *   data-map="a.b"                 tbody rebuilt from {key: number}
 *   table data-rows="a" data-key   rows by key; th data-col (and data-fmt, data-link) per cell
 *   data-charts="URL"              uPlot charts (data-chart="cumulative" | "per_bucket")
 *   button data-post="URL"         POST with the CSRF token; data-confirm, data-then
 */
"use strict";

(function () {
  const UTC = (v) => (v ? new Date(v) : null);
  const pad = (n) => String(n).padStart(2, "0");
  const FORMATS = {
    num: (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US")),
    rate: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1)),
    text: (v) =>
      v === null || v === undefined || v === "" ? "–" : Array.isArray(v) ? v.join(", ") : String(v),
    badge: (v) => (v === null || v === undefined ? "–" : String(v)),
    when: (v) => {
      const d = UTC(v);
      if (!d || isNaN(d)) return "–";
      return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
        `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
    },
    time: (v) => {
      const d = UTC(v);
      if (!d || isNaN(d)) return "–";
      return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
    },
  };

  function get(obj, path) {
    return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
  }

  /* A status as a class name: only the characters statuses are made of. */
  function badgeClass(value) {
    return "badge " + String(value || "").replace(/[^a-z0-9_-]/gi, "");
  }

  function setValue(el, value, fmt) {
    const target = el.querySelector(".v, .badge") || el;
    if (el.hasAttribute("data-alert")) el.classList.toggle("alert", Number(value) > 0);
    const kind = fmt || "num";
    target.textContent = (FORMATS[kind] || FORMATS.num)(value);
    if (kind === "badge" || target.classList.contains("badge")) {
      target.className = badgeClass(value);
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function cell(tag, text, className) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    el.textContent = text;
    return el;
  }

  function fillMap(tbody, map) {
    clear(tbody);
    const entries = Object.entries(map || {});
    if (!entries.length) {
      const td = cell("td", tbody.dataset.empty || "None.", "muted");
      td.colSpan = 2;
      tbody.appendChild(document.createElement("tr")).appendChild(td);
      return;
    }
    for (const [key, n] of entries) {
      const tr = document.createElement("tr");
      tr.appendChild(cell("td", key));
      tr.appendChild(cell("td", FORMATS.num(n), "n"));
      tbody.appendChild(tr);
    }
  }

  /* Rows keyed by data-key; cells follow the header's data-col, in its order. */
  function fillRows(table, rows) {
    if (!Array.isArray(rows)) return;
    const heads = Array.from(table.querySelectorAll("thead th"));
    const tbody = table.tBodies[0] || table.appendChild(document.createElement("tbody"));
    const keyName = table.dataset.key;
    const existing = new Map();
    for (const tr of Array.from(tbody.rows)) {
      if (tr.dataset.key !== undefined) existing.set(tr.dataset.key, tr);
      else tr.remove(); // a placeholder ("none yet")
    }
    const seen = new Set();
    for (const row of rows) {
      const key = String(get(row, keyName));
      seen.add(key);
      let tr = existing.get(key);
      if (!tr) tr = newRow(heads, row, key);
      heads.forEach((th, i) => {
        const td = tr.cells[i];
        if (!td || !th.dataset.col || th.dataset.link) return;
        setValue(td, get(row, th.dataset.col), th.dataset.fmt);
      });
      tbody.appendChild(tr); // appending an existing row moves it: rows follow the data's order
    }
    for (const [key, tr] of existing) if (!seen.has(key)) tr.remove();
    if (!rows.length && table.dataset.empty) {
      const td = cell("td", table.dataset.empty, "muted");
      td.colSpan = heads.length;
      tbody.appendChild(document.createElement("tr")).appendChild(td);
    }
  }

  function newRow(heads, row, key) {
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    for (const th of heads) {
      const td = document.createElement("td");
      if (th.classList.contains("n")) td.className = "n";
      if (th.dataset.link === "campaign") {
        // A link to the dashboard's own page for the campaign, never to crawled content.
        const a = cell("a", key);
        a.href = "/campaigns/" + encodeURIComponent(key);
        td.appendChild(a);
      } else if (th.dataset.fmt === "badge") {
        td.appendChild(cell("span", "", "badge"));
      }
      tr.appendChild(td);
    }
    return tr;
  }

  function apply(root, data) {
    root.querySelectorAll("[data-bind]").forEach((el) => {
      setValue(el, get(data, el.dataset.bind), el.dataset.fmt);
    });
    root.querySelectorAll("[data-show]").forEach((el) => {
      el.hidden = !get(data, el.dataset.show);
    });
    root.querySelectorAll("[data-hide]").forEach((el) => {
      el.hidden = !!get(data, el.dataset.hide);
    });
    root.querySelectorAll("[data-map]").forEach((el) => fillMap(el, get(data, el.dataset.map)));
    root.querySelectorAll("table[data-rows]").forEach((el) => fillRows(el, get(data, el.dataset.rows)));
  }

  function stamp(root, text, stale) {
    root.querySelectorAll("[data-stamp]").forEach((el) => {
      el.textContent = text;
      el.classList.toggle("stale", !!stale);
    });
  }

  async function getJSON(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.status === 401 || resp.status === 403) {
      const err = new Error("signed out: reload the page to log in again");
      err.fatal = true;
      throw err;
    }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    return resp.json();
  }

  /* Poll while the tab is visible; slower (data-idle) once the campaign is not running. */
  function poller(interval, idle, tick) {
    let timer = null;
    let delay = interval;
    async function run() {
      timer = null;
      if (document.hidden) return;
      try {
        const data = await tick();
        delay = idle && data && data.status && data.status !== "running" ? idle : interval;
      } catch (err) {
        if (err.fatal) return; // stop: a reload leads to the login form
      }
      timer = setTimeout(run, delay);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer === null) run();
    });
    timer = setTimeout(run, delay);
  }

  function startPolling(root) {
    const url = root.dataset.poll;
    poller(Number(root.dataset.interval) || 5000, Number(root.dataset.idle) || 0, async () => {
      try {
        const data = await getJSON(url);
        apply(root, data);
        stamp(root, "updated " + FORMATS.time(new Date().toISOString()));
        return data;
      } catch (err) {
        stamp(root, err.fatal ? err.message : "update failed, retrying", true);
        throw err;
      }
    });
  }

  /* -- charts ------------------------------------------------------------------------- */

  const BUCKETS = { 2: "2 s", 10: "10 s", 60: "minute", 300: "5 minutes", 900: "15 minutes", 3600: "hour", 86400: "day" };

  function startCharts(box) {
    const base = box.dataset.charts;
    const select = document.querySelector("[data-resolution]");
    const plots = new Map();
    const empty = box.querySelector("[data-chart-empty]");
    const note = box.querySelector("[data-chart-note]");

    function draw(data) {
      const hasData = data.t && data.t.length > 0;
      if (empty) empty.hidden = hasData;
      if (note) {
        note.textContent = data.series.map((s) => `${s.label} ${FORMATS.num(s.total)}`).join(" · ") +
          ` (buckets of ${BUCKETS[data.bucket_seconds] || data.bucket_seconds + " s"})`;
      }
      box.querySelectorAll("[data-chart]").forEach((el) => {
        el.hidden = !hasData;
        if (!hasData || typeof uPlot === "undefined") return;
        const mode = el.dataset.chart;
        const columns = [data.t, ...data.series.map((s) => s[mode])];
        const key = data.series.map((s) => s.key).join() + "|" + data.bucket_seconds;
        const old = plots.get(el);
        if (old && old.key === key) {
          old.plot.setData(columns);
          return;
        }
        if (old) old.plot.destroy();
        const plot = new uPlot(chartOptions(el, data, mode), columns, el);
        plots.set(el, { plot, key });
      });
    }

    async function load() {
      const resolution = select ? select.value : "auto";
      const data = await getJSON(base + "?resolution=" + encodeURIComponent(resolution));
      draw(data);
      return data;
    }

    if (select) select.addEventListener("change", () => load().catch(() => {}));
    window.addEventListener("resize", () => {
      for (const [el, { plot }] of plots) plot.setSize(size(el));
    });
    load().catch(() => {}).finally(() => {
      poller(Number(box.dataset.interval) || 10000, Number(box.dataset.idle) || 0, load);
    });
  }

  function size(el) {
    return { width: Math.max(el.clientWidth - 16, 300), height: 220 };
  }

  /* Tick labels in UTC, 24 h: seconds for sub-minute buckets, the date once a chart spans days. */
  function axisTime(ts, data) {
    const d = new Date(ts * 1000);
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    const span = data.t.length ? data.t[data.t.length - 1] - data.t[0] : 0;
    if (span > 2 * 86400) return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${hm}`;
    return data.bucket_seconds < 60 ? `${hm}:${pad(d.getUTCSeconds())}` : hm;
  }

  const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
    21600, 43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400];

  function chartOptions(el, data, mode) {
    const few = data.t.length <= 60;
    return {
      ...size(el),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true } },
      series: [
        { label: "UTC" },
        ...data.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          points: { show: few },
          value: (u, v) => FORMATS.num(v),
        })),
      ],
      axes: [
        // Ticks no closer than a bucket (no 1 s ticks on 2 s data) and far enough apart
        // for an "HH:MM:SS" label.
        {
          space: 90,
          incrs: TICK_STEPS.filter((s) => s >= data.bucket_seconds),
          values: (u, ticks) => ticks.map((ts) => axisTime(ts, data)),
        },
        { size: 64, values: (u, ticks) => ticks.map((v) => FORMATS.num(v)) },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      title: mode === "cumulative" ? "Progress (running total)" :
        `Per ${BUCKETS[data.bucket_seconds] || data.bucket_seconds + " s"}`,
    };
  }

  /* -- operator actions ----------------------------------------------------------------- */

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /* What an action's answer says, in a few words (text only). */
  function summary(body) {
    if (!body) return "done";
    if (body.pid) return `started (pid ${body.pid}, ${body.workers} workers); progress shows here`;
    if (body.requeued) return `requeued on ${body.queue}`;
    if (body.status) return `run ${body.run}: ${body.status}`;
    if (body.already_sent !== undefined) {
      return `notices: ${body.sent} sent, ${body.failed} failed, ${body.no_contact} without ` +
        `contact, ${body.already_sent} with nothing due`;
    }
    return "done";
  }

  async function post(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const result = button.parentElement.querySelector("[data-result]");
    const say = (text, ok) => {
      if (!result) return;
      result.textContent = text;
      result.className = "result " + (ok ? "ok" : "error");
    };
    button.disabled = true;
    try {
      const resp = await fetch(button.dataset.post, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json", "Content-Type": "application/json" },
        body: button.dataset.body || "{}",
      });
      let body = null;
      try {
        body = await resp.json();
      } catch (_) {
        body = null;
      }
      if (!resp.ok) {
        say((body && (body.detail || body.error)) || `failed (HTTP ${resp.status})`, false);
        return;
      }
      say(summary(body), true);
      if (button.dataset.then === "remove-row") {
        const tr = button.closest("tr");
        if (tr) tr.remove();
      }
    } catch (err) {
      say("failed: " + err.message, false);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-poll]").forEach(startPolling);
    document.querySelectorAll("[data-charts]").forEach(startCharts);
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-post]");
      if (button) post(button);
    });
  });
})();
