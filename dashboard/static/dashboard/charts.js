/* Draws the staff pages' charts with the vendored Chart.js from the JSON each page embeds
 * (Django's json_script). Every canvas names its chart in data-chart; the drawn charts are kept in
 * window.batterypredCharts so the browser test can check they hold data points. */
(function () {
  "use strict";

  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
  const BAND_COLOURS = {
    completed: "rgba(22, 163, 74, 0.10)",
    active: "rgba(37, 99, 235, 0.16)",
    scheduled: "rgba(37, 99, 235, 0.10)",
    cancelled: "rgba(107, 114, 128, 0.10)",
  };

  const DEADLINE_COLOUR = "#ea580c";

  function data(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function colour(i) {
    return PALETTE[i % PALETTE.length];
  }

  function dateLabel(ms) {
    const d = new Date(ms);
    return d.toISOString().slice(0, 16).replace("T", " ");
  }

  function perVersion(payload, key, suffix) {
    return Object.entries(payload.series).map(([version, s], i) => ({
      label: version + suffix,
      data: s[key],
      borderColor: colour(i),
      backgroundColor: colour(i),
      spanGaps: true,
      tension: 0,
      pointRadius: 2,
    }));
  }

  function dailyChart(canvas, payload, key, yTitle, extra) {
    const datasets = perVersion(payload, key, "").concat(extra || []);
    return new Chart(canvas, {
      type: "line",
      data: { labels: payload.days, datasets: datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { title: { display: true, text: yTitle } } },
      },
    });
  }

  const builders = {
    "accuracy-mae": (canvas) => dailyChart(canvas, data("accuracy-data"), "mae", "MAE (points)"),
    "accuracy-within10": (canvas) => dailyChart(canvas, data("accuracy-data"), "within_10", "% within 10 points"),
    "accuracy-coverage": (canvas) => {
      const payload = data("accuracy-data");
      const promise = {
        label: "promised " + payload.promised_coverage + " %",
        data: payload.days.map(() => payload.promised_coverage),
        borderColor: "#111827",
        borderDash: [6, 4],
        pointRadius: 0,
      };
      return dailyChart(canvas, payload, "coverage", "% of actual levels inside the 95 % interval", [promise]);
    },
    "accuracy-histogram": (canvas) => {
      const payload = data("accuracy-data").histogram;
      return new Chart(canvas, {
        type: "bar",
        data: {
          labels: payload.labels,
          datasets: [{ label: "bookings", data: payload.counts, backgroundColor: colour(0) }],
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: { title: { display: true, text: "actual − predicted (points)" } },
            y: { title: { display: true, text: "bookings" } },
          },
        },
      });
    },
    "readiness-reliability": (canvas) => {
      const payload = data("accuracy-data").readiness;
      return new Chart(canvas, {
        type: "scatter",
        data: {
          datasets: [
            {
              label: "share ready, per 10 % bin of the promised probability",
              data: payload.reliability,
              showLine: true,
              borderColor: colour(0),
              backgroundColor: colour(0),
              pointRadius: 4,
            },
            {
              label: "perfect calibration",
              data: [{ x: 0, y: 0 }, { x: 100, y: 100 }],
              showLine: true,
              borderColor: "#111827",
              borderDash: [6, 4],
              pointRadius: 0,
            },
          ],
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: { min: 0, max: 100, title: { display: true, text: "mean probability ready (%)" } },
            y: { min: 0, max: 100, title: { display: true, text: "% of pick-ups that were ready" } },
          },
          plugins: {
            tooltip: {
              callbacks: {
                label: (item) => {
                  const p = item.raw;
                  const n = p.count !== undefined ? " (" + p.count + " pick-ups)" : "";
                  return "promised " + p.x + " %, ready " + p.y + " %" + n;
                },
              },
            },
          },
        },
      });
    },
    "readiness-brier": (canvas) => {
      const payload = data("accuracy-data").readiness;
      const line = (label, values, i, dash) => ({
        label: label,
        data: values,
        borderColor: colour(i),
        backgroundColor: colour(i),
        borderDash: dash,
        spanGaps: true,
        tension: 0,
        pointRadius: 2,
      });
      return new Chart(canvas, {
        type: "line",
        data: {
          labels: payload.days,
          datasets: [
            line("Brier score", payload.brier, 0, []),
            line("baseline (always the range's share ready)", payload.baseline, 6, [6, 4]),
          ],
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          interaction: { mode: "index", intersect: false },
          scales: { y: { min: 0, title: { display: true, text: "Brier score (lower is better)" } } },
        },
      });
    },
    timeline: (canvas) => {
      const payload = data("timeline-data");
      const intervals = [];
      payload.predicted.forEach((p) => {
        intervals.push({ x: p.x, y: p.lower }, { x: p.x, y: p.upper }, { x: p.x, y: null });
      });
      // Each plug-in deadline is a dashed vertical line across the whole range, drawn like the intervals;
      // its label is written at the top by the plugin below.
      const deadlines = [];
      (payload.deadlines || []).forEach((d) => {
        const point = { x: d.x, label: d.label, booking_id: d.booking_id };
        deadlines.push({ ...point, y: 0 }, { ...point, y: 100 }, { x: d.x, y: null });
      });
      const deadlineLabels = {
        id: "plugInLabels",
        afterDatasetsDraw(chart) {
          const { ctx, chartArea, scales } = chart;
          ctx.save();
          ctx.fillStyle = DEADLINE_COLOUR;
          ctx.font = "11px sans-serif";
          ctx.textBaseline = "top";
          (payload.deadlines || []).forEach((d, i) => {
            const x = scales.x.getPixelForValue(d.x);
            if (x < chartArea.left || x > chartArea.right) return;
            const width = ctx.measureText(d.label).width;
            const left = x + 4 + width > chartArea.right ? x - 4 - width : x + 4;
            ctx.fillText(d.label, left, chartArea.top + 4 + (i % 3) * 13);
          });
          ctx.restore();
        },
      };
      const bandsPlugin = {
        id: "bookingBands",
        beforeDatasetsDraw(chart) {
          const { ctx, chartArea, scales } = chart;
          ctx.save();
          payload.bands.forEach((band) => {
            const left = Math.max(scales.x.getPixelForValue(band.start), chartArea.left);
            const right = Math.min(scales.x.getPixelForValue(band.end), chartArea.right);
            if (right <= left) return;
            ctx.fillStyle = BAND_COLOURS[band.status] || BAND_COLOURS.scheduled;
            ctx.fillRect(left, chartArea.top, Math.max(right - left, 2), chartArea.bottom - chartArea.top);
          });
          ctx.restore();
        },
      };
      return new Chart(canvas, {
        type: "scatter",
        data: {
          datasets: [
            {
              label: "battery readings",
              data: payload.readings,
              showLine: true,
              borderColor: colour(6),
              backgroundColor: colour(6),
              pointRadius: 2,
            },
            {
              label: "95 % interval",
              data: intervals,
              showLine: true,
              spanGaps: false,
              borderColor: "rgba(37, 99, 235, 0.45)",
              borderWidth: 3,
              pointRadius: 0,
            },
            { label: "predicted at pick-up", data: payload.predicted, backgroundColor: colour(0), pointRadius: 4 },
            {
              label: "plug in by (at-risk pick-ups)",
              data: deadlines,
              showLine: true,
              spanGaps: false,
              borderColor: DEADLINE_COLOUR,
              backgroundColor: DEADLINE_COLOUR,
              borderDash: [6, 4],
              borderWidth: 2,
              pointRadius: 0,
            },
            {
              label: "actual at pick-up",
              data: payload.actual,
              backgroundColor: colour(1),
              pointStyle: "rectRot",
              pointRadius: 5,
            },
          ],
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: {
              type: "linear",
              min: payload.since,
              max: payload.until,
              ticks: { callback: (value) => dateLabel(value), maxTicksLimit: 8 },
            },
            y: { min: 0, max: 100, title: { display: true, text: "battery %" } },
          },
          plugins: {
            tooltip: {
              callbacks: {
                label: (item) => {
                  const p = item.raw;
                  if (p.label) return p.label + " (booking " + p.booking_id + ")";
                  const what = item.dataset.label;
                  const booking = p.booking_id ? " (booking " + p.booking_id + ")" : "";
                  const band = p.lower !== undefined ? " [" + p.lower + "–" + p.upper + "]" : "";
                  return what + ": " + p.y + " %" + band + booking + " at " + dateLabel(p.x);
                },
              },
            },
          },
        },
        plugins: [bandsPlugin, deadlineLabels],
      });
    },
  };

  function draw() {
    window.batterypredCharts = {};
    document.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      const build = builders[canvas.dataset.chart];
      if (build) window.batterypredCharts[canvas.id] = build(canvas);
    });
    document.documentElement.dataset.chartsReady = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
