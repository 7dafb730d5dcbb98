// ajet view: the only script the pages run. Charts are uPlot's (vendored); this file fetches their data, polls for
// new steps while a run trains, and refreshes the runs table in place.
(function () {
  "use strict";
  const STEP_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
  const COLORS = ["#1570ef", "#e04f16", "#12b76a", "#7a5af8", "#dd2590", "#0e9384", "#ca8504", "#475467", "#f04438", "#2e90fa"];

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then((r) => {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  // One uPlot per chart; rebuilt when its set of lines changes, else given the new data.
  function charts(container, pollMs) {
    const runs = (container.dataset.runs || "").split(",").filter(Boolean);
    const select = document.getElementById("extra-metric");
    const status = document.getElementById("charts-status");
    const extra = new URLSearchParams(location.search).getAll("metric");
    const plots = new Map(); // title -> {plot, signature, box}

    function url() {
      const q = new URLSearchParams();
      runs.forEach((r) => q.append("run", r));
      extra.forEach((m) => q.append("metric", m));
      return "/api/curves?" + q.toString();
    }

    function tick(v) {
      if (v === 0) return "0";
      const a = Math.abs(v);
      return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(+v.toPrecision(3));
    }

    function draw(chart, index) {
      const lines = chart.lines;
      const signature = lines.map((l) => l.label).join("|");
      let entry = plots.get(chart.title);
      if (!lines.length) {
        if (entry) { entry.box.remove(); plots.delete(chart.title); }
        return;
      }
      const data = uPlot.join(lines.map((l) => [l.steps, l.values]));
      if (entry && entry.signature === signature) {
        entry.plot.setData(data);
        return;
      }
      if (entry) { entry.plot.destroy(); entry.box.remove(); }
      const box = document.createElement("div");
      box.className = "chart";
      box.dataset.chart = chart.title;
      const heading = document.createElement("h3");
      heading.textContent = chart.title;
      box.appendChild(heading);
      container.appendChild(box);
      const few = Math.max(...lines.map((l) => l.steps.length)) < 30;
      const options = {
        width: Math.max(380, box.clientWidth - 10),
        height: 220,
        scales: { x: { time: false } },
        // y ticks with enough digits for small values (a KL of 1e-4 would otherwise read "0, 0, 0")
        axes: [{ label: "step", incrs: STEP_INCRS }, { size: 60, values: (u, ticks) => ticks.map(tick) }],
        series: [{ label: "step" }].concat(lines.map((l, i) => ({
          label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: few },
        }))),
      };
      plots.set(chart.title, { plot: new uPlot(options, data, box), signature, box });
    }

    function refresh() {
      return getJSON(url()).then((json) => {
        json.charts.forEach(draw);
        if (select && select.options.length <= 1) {
          json.metrics.forEach((m) => select.add(new Option(m, m)));
        }
        const steps = Object.entries(json.steps).map(([k, s]) => k + " step " + (s === null ? "–" : s));
        if (status) status.textContent = steps.join(" · ") + " · updated " + new Date().toLocaleTimeString();
        container.dataset.loaded = "1";
      }).catch((err) => { if (status) status.textContent = String(err); });
    }

    if (select) {
      select.addEventListener("change", () => {
        if (!select.value) return;
        const q = new URLSearchParams(location.search);
        q.append("metric", select.value);
        location.search = q.toString();
      });
    }
    refresh();
    setInterval(refresh, pollMs);
  }

  // The runs table: fetch the page again and swap the changing cells (checkboxes keep their state); new runs
  // appear as new rows.
  function pollRuns(pollMs) {
    setInterval(() => {
      fetch(location.href).then((r) => r.text()).then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html");
        const body = document.querySelector("#runs tbody");
        const freshBody = fresh.querySelector("#runs tbody");
        if (!body || !freshBody) { if (!body && freshBody) location.reload(); return; }
        freshBody.querySelectorAll("tr[data-run]").forEach((row) => {
          const old = body.querySelector('tr[data-run="' + CSS.escape(row.dataset.run) + '"]');
          if (!old) { body.appendChild(document.importNode(row, true)); return; }
          row.querySelectorAll("[data-field]").forEach((cell) => {
            const target = old.querySelector('[data-field="' + cell.dataset.field + '"]');
            if (target && target.innerHTML !== cell.innerHTML) target.innerHTML = cell.innerHTML;
          });
        });
      }).catch(() => {});
    }, pollMs);
  }

  // The filter form: leave empty fields out of the URL, so a shared link says only what was filtered.
  function cleanForm(form) {
    form.addEventListener("submit", () => {
      form.querySelectorAll("input, select").forEach((field) => {
        if (field.value === "" || (field.name === "order" && field.value === "-seq")) field.disabled = true;
      });
    });
  }

  window.ajetView = { charts, pollRuns, cleanForm };
})();
