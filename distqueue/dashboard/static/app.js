// distqueue dashboard: live figures, sorting, filtering, the throughput chart, confirmations.
// The pages work without it; it only refreshes and arranges what the server rendered.
(function () {
  "use strict";
  const body = document.body;
  const base = body.dataset.base;
  const refresh = Math.max(0.5, parseFloat(body.dataset.refresh || "2")) * 1000;

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    seconds = Math.max(0, Math.floor(seconds));
    const pad = function (n) { return String(n).padStart(2, "0"); };
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m" + pad(seconds % 60) + "s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h" + pad(Math.floor(seconds % 3600 / 60)) + "m";
    return Math.floor(seconds / 86400) + "d" + pad(Math.floor(seconds % 86400 / 3600)) + "h";
  }
  function show(field, value) {
    if (field === "oldest_age") return age(value);
    if (field === "put_rate" || field === "get_rate") return value === null ? "-" : value.toFixed(1);
    return String(value);
  }

  // sorting: click a column's header; filtering: the box above the queues
  document.querySelectorAll("table.sortable th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      const tbody = th.closest("table").querySelector("tbody");
      const descending = th.dataset.order !== "desc";
      th.closest("tr").querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = descending ? "desc" : "asc";
      const rows = Array.from(tbody.querySelectorAll("tr"));
      const value = function (row) {
        const text = row.children[column] ? row.children[column].textContent.trim() : "";
        const number = parseFloat(text);
        return isNaN(number) ? text.toLowerCase() : number;
      };
      rows.sort(function (a, b) {
        const x = value(a), y = value(b);
        const order = x < y ? -1 : x > y ? 1 : 0;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { tbody.appendChild(row); });
    });
  });
  const filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", function () {
      const text = filter.value.toLowerCase();
      document.querySelectorAll("#queues tbody tr").forEach(function (row) {
        row.hidden = !row.dataset.queue.toLowerCase().includes(text);
      });
    });
  }

  // the throughput chart: put/s and get/s of all queues together, over the last minutes
  const canvas = document.getElementById("throughput");
  let series = [];
  try {
    series = JSON.parse((canvas && canvas.dataset.history) || "[]");
  } catch (error) {
    series = [];
  }
  function draw() {
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 24;
    ctx.clearRect(0, 0, w, h);
    let top = 1;
    series.forEach(function (p) { top = Math.max(top, p.put, p.get); });
    ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#57606a"; ctx.font = "11px sans-serif";
    ctx.beginPath(); ctx.moveTo(pad, h - pad); ctx.lineTo(w - 4, h - pad); ctx.stroke();
    ctx.fillText(top.toFixed(1) + "/s", 2, 12); ctx.fillText("0", 2, h - pad);
    [["put", "#0969da"], ["get", "#1a7f37"]].forEach(function (line) {
      ctx.strokeStyle = line[1]; ctx.lineWidth = 2; ctx.beginPath();
      series.forEach(function (p, i) {
        const x = pad + (w - pad - 4) * (series.length < 2 ? 1 : i / (series.length - 1));
        const y = h - pad - (h - pad - 8) * (p[line[0]] / top);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
  }

  function update(data) {
    let put = 0, get = 0;
    const names = new Set();
    data.queues.forEach(function (q) {
      names.add(q.queue);
      put += q.put_rate || 0; get += q.get_rate || 0;
      document.querySelectorAll('[data-queue="' + CSS.escape(q.queue) + '"] [data-field]').forEach(function (cell) {
        const field = cell.dataset.field;
        if (field === "state") return;
        if (field in q) cell.textContent = show(field, q[field]);
      });
    });
    series.push({ put: put, get: get });
    if (series.length > 150) series.shift();
    draw();
    const table = document.getElementById("queues");
    if (table) {
      const known = JSON.parse(table.dataset.names || "[]");
      if (known.length !== names.size || known.some(function (n) { return !names.has(n); })) {
        window.location.reload();  // queues came or went
      }
    }
    body.dataset.updated = String(Date.now());
  }

  if (document.getElementById("queues") || document.getElementById("figures")) {
    const poll = function () {
      fetch(base + "/api/queues", { headers: { "Accept": "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) { if (data && data.queues) update(data); })
        .catch(function () { /* the next poll tries again */ })
        .finally(function () { window.setTimeout(poll, refresh); });
    };
    window.setTimeout(poll, 0);
  }
})();
