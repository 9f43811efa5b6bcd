/* mdq quality report: draws the pages written by mdq/report.py with plotly.js (offline).
 *
 * MDQ.indexPage(overview, heatmap, findings): overview cards, trend, coverage heatmap (a click
 * opens the series), findings table.
 * MDQ.seriesPage(meta, MDQ.decode(view)): candlesticks + volume with every finding marked; a downsampled
 * view is replaced by every candle (series/<slug>.full.js, loaded on demand) once the
 * zoomed-in range holds fewer than meta.max_view candles. A page opened as
 * series/<slug>.html#from=<iso>&to=<iso>&id=<anomaly id> zooms to that place.
 */
(function () {
  "use strict";

  var SEVERITY_COLOUR = { error: "#c0392b", warn: "#e67e22" };
  var CELL_COLOURS = ["#eeeeee", "#c8ccd2", "#2e9e5b", "#f1c40f", "#d64541"];
  var CELL_NAMES = ["not loaded", "closed", "complete", "session without candles", "partial"];

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      return Math.abs(value) >= 1000 || value === Math.round(value)
        ? value.toLocaleString("en-US", { maximumFractionDigits: 2 })
        : value.toPrecision(6);
    }
    return String(value);
  }

  function findingLink(f, prefix) {
    if (!f.page) return null;
    var href = prefix + f.page + "#id=" + f.id;
    if (f.ts_start) href += "&from=" + encodeURIComponent(f.ts_start);
    if (f.ts_end) href += "&to=" + encodeURIComponent(f.ts_end);
    return href;
  }

  /* A sortable, filterable table of findings. */
  function findingsTable(container, findings, prefix) {
    var columns = [
      ["severity", "severity"], ["status", "status"], ["symbol", "symbol"],
      ["timeframe", "tf"], ["type", "type"], ["check", "check"], ["ts_start", "from (UTC)"],
      ["ts_end", "to (UTC)"], ["observed", "observed"], ["expected", "expected"],
      ["reason", "reason"]
    ];
    var state = { key: "ts_start", desc: true, filters: {} };
    var controls = el("div", { "class": "filters" });
    var search = el("input", { type: "search", placeholder: "filter: any text", id: "findings-filter" });
    controls.appendChild(search);
    ["severity", "status", "type"].forEach(function (key) {
      var select = el("select", { "data-key": key, id: "findings-filter-" + key });
      select.appendChild(el("option", { value: "" }, "any " + key));
      Array.from(new Set(findings.map(function (f) { return f[key]; }))).sort().forEach(function (v) {
        select.appendChild(el("option", { value: v }, v));
      });
      select.addEventListener("change", function () { state.filters[key] = select.value; draw(); });
      controls.appendChild(select);
    });
    var count = el("span", { "class": "count" });
    controls.appendChild(count);
    var table = el("table", { "class": "findings", id: "findings-table" });
    var head = el("tr");
    columns.forEach(function (c) {
      var th = el("th", { "data-key": c[0] }, c[1]);
      th.addEventListener("click", function () {
        state.desc = state.key === c[0] ? !state.desc : false;
        state.key = c[0];
        draw();
      });
      head.appendChild(th);
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = el("tbody");
    table.appendChild(tbody);
    search.addEventListener("input", draw);
    container.appendChild(controls);
    container.appendChild(table);

    function draw() {
      var text = search.value.toLowerCase();
      var rows = findings.filter(function (f) {
        for (var k in state.filters) {
          if (state.filters[k] && f[k] !== state.filters[k]) return false;
        }
        if (!text) return true;
        return columns.some(function (c) { return String(f[c[0]] || "").toLowerCase().indexOf(text) >= 0; });
      });
      rows.sort(function (a, b) {
        var x = a[state.key], y = b[state.key];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        var r = x < y ? -1 : 1;
        return state.desc ? -r : r;
      });
      tbody.textContent = "";
      rows.forEach(function (f) {
        var tr = el("tr", { "class": "sev-" + f.severity + " st-" + f.status, "data-id": f.id });
        columns.forEach(function (c) {
          var td = el("td");
          var href = c[0] === "ts_start" ? findingLink(f, prefix) : null;
          if (href) td.appendChild(el("a", { href: href }, f.ts_start));
          else td.textContent = fmt(f[c[0]]);
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      count.textContent = rows.length + " of " + findings.length + " findings";
    }
    draw();
  }

  function indexPage(overview, heatmap, findings) {
    var cards = document.getElementById("overview");
    [
      ["series tracked", overview.series], ["candles", overview.candles],
      ["open errors", overview.open_errors], ["open warnings", overview.open_warnings],
      ["new since previous run", overview.new_since_previous],
      ["resolved since previous run", overview.resolved_since_previous],
      ["stale series", overview.stale_series], ["quarantined rows", overview.quarantined_rows],
      ["acknowledged / muted", overview.acknowledged], ["last run", overview.last_run || "never"]
    ].forEach(function (c) {
      var card = el("div", { "class": "card", "data-name": c[0] });
      card.appendChild(el("div", { "class": "value" }, fmt(c[1])));
      card.appendChild(el("div", { "class": "label" }, c[0]));
      cards.appendChild(card);
    });

    var runs = overview.trend.map(function (p) { return p.run.slice(0, 19).replace("T", " "); });
    Plotly.newPlot("trend", [
      { x: runs, y: overview.trend.map(function (p) { return p.error; }), name: "error",
        type: "scatter", mode: "lines+markers", line: { color: SEVERITY_COLOUR.error } },
      { x: runs, y: overview.trend.map(function (p) { return p.warn; }), name: "warn",
        type: "scatter", mode: "lines+markers", line: { color: SEVERITY_COLOUR.warn } }
    ], { margin: { t: 10, b: 50, l: 50, r: 10 }, height: 220, yaxis: { rangemode: "tozero" },
      xaxis: { type: "category", title: "run (UTC)" } },
      { displaylogo: false, responsive: true });

    if (heatmap.y.length) {
      var n = CELL_COLOURS.length, scale = [];
      CELL_COLOURS.forEach(function (c, i) {
        scale.push([i / n, c]);
        scale.push([(i + 1) / n, c]);
      });
      var text = heatmap.z.map(function (row) {
        return row.map(function (code) { return CELL_NAMES[code]; });
      });
      var hm = document.getElementById("heatmap");
      var holes = { x: [], y: [] };
      heatmap.z.forEach(function (row, r) {
        row.forEach(function (code, c) {
          if (CELL_NAMES[code] === "partial") { holes.x.push(heatmap.x[c]); holes.y.push(heatmap.y[r]); }
        });
      });
      Plotly.newPlot(hm, [{
        type: "heatmap", x: heatmap.x, y: heatmap.y, z: heatmap.z, text: text,
        zmin: -0.5, zmax: n - 0.5, colorscale: scale, showscale: false, xgap: 0, ygap: 1,
        hovertemplate: "%{y}<br>%{x}: %{text}<extra></extra>"
      }, {
        /* the cells with missing candles, marked so that one bad day shows among years */
        type: "scatter", mode: "markers", name: "missing candles", x: holes.x, y: holes.y,
        marker: { symbol: "triangle-down", size: 9, color: "#d64541", line: { width: 1, color: "#fff" } },
        hovertemplate: "%{y}<br>%{x}: partial (missing candles)<extra></extra>"
      }], {
        margin: { t: 10, b: 60, l: 140, r: 10 }, showlegend: false,
        height: Math.max(200, 80 + 18 * heatmap.y.length),
        xaxis: { type: "category", nticks: 12, tickangle: -30 },
        yaxis: { autorange: "reversed", automargin: true, type: "category" }
      }, { displaylogo: false, responsive: true });
      hm.on("plotly_click", function (ev) {
        var row = heatmap.y.indexOf(ev.points[0].y);
        if (row >= 0) window.location.href = heatmap.links[row];
      });
    }
    findingsTable(document.getElementById("findings"), findings, "");
  }

  function parseHash() {
    var out = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var kv = part.split("=");
      if (kv[0]) out[kv[0]] = decodeURIComponent(kv[1] || "");
    });
    return out;
  }

  /* Plotly shows Date objects in the browser's zone; candles are shown in UTC instead, as
   * "YYYY-MM-DD HH:MM:SS" wall-clock strings, and axis ranges are read back the same way. */
  function wall(ms) { return new Date(ms).toISOString().slice(0, 19).replace("T", " "); }
  function fromWall(text) {
    var s = String(text).trim().replace(" ", "T");
    if (s.length === 10) s += "T00:00:00";
    return Date.parse(s + "Z");
  }
  function toDates(t) { return Array.from(t, wall); }

  /* Columns written by mdq/report.py encode_columns: base64 of little-endian float64. */
  function decode(encoded) {
    var out = {};
    Object.keys(encoded).forEach(function (name) {
      var text = atob(encoded[name]), bytes = new Uint8Array(text.length);
      for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
      out[name] = Array.from(new Float64Array(bytes.buffer));
    });
    return out;
  }

  /* The candle nearest to (at or before) instant ms in data, as an index. */
  function nearest(data, ms) {
    var lo = 0, hi = data.t.length - 1, s = ms;
    if (hi < 0) return -1;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (data.t[mid] <= s) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  function seriesPage(meta, view) {
    var chart = document.getElementById("chart");
    var note = document.getElementById("view-note");
    var full = meta.bucket_candles ? null : view;
    var showing = meta.bucket_candles ? "view" : "full";

    function candleTrace(data) {
      return {
        type: "candlestick", name: meta.symbol, x: toDates(data.t), open: data.o, high: data.h,
        low: data.l, close: data.c, xaxis: "x", yaxis: "y",
        increasing: { line: { color: "#2e9e5b" } }, decreasing: { line: { color: "#c0392b" } }
      };
    }
    function volumeTrace(data) {
      return { type: "bar", name: "volume", x: toDates(data.t), y: data.v, xaxis: "x", yaxis: "y2",
        marker: { color: "#9aa5b1" }, hovertemplate: "%{x}<br>volume %{y}<extra></extra>" };
    }

    var spans = [], points = {};
    meta.findings.forEach(function (f) {
      if (!f.ts_start) return;
      var start = Date.parse(f.ts_start), end = f.ts_end ? Date.parse(f.ts_end) : start;
      var label = f.type + " (" + f.severity + ", " + f.status + "): " + f.reason;
      if (f.check === "candle_gaps") {
        spans.push({ f: f, start: start, end: end + meta.step_seconds * 1000, label: label });
      }
      var key = f.type;
      points[key] = points[key] || { x: [], y: [], text: [], ids: [], colour: [] };
      var i = nearest(view, start);
      points[key].x.push(wall(start));
      points[key].y.push(i >= 0 ? view.h[i] : null);
      points[key].text.push(label);
      points[key].ids.push(f.id);
      points[key].colour.push(SEVERITY_COLOUR[f.severity] || "#555");
    });
    var symbols = ["triangle-down", "x", "diamond", "star", "circle", "square", "cross", "hexagon"];
    var markerTraces = Object.keys(points).sort().map(function (type, k) {
      var p = points[type];
      return {
        type: "scatter", mode: "markers", name: type, x: p.x, y: p.y, text: p.text,
        customdata: p.ids, xaxis: "x", yaxis: "y", meta: "finding",
        marker: { symbol: symbols[k % symbols.length], size: 11, color: p.colour,
          line: { width: 1, color: "#222" } },
        hovertemplate: "%{x}<br>%{text}<extra></extra>"
      };
    });
    var shapes = spans.map(function (s) {
      return { type: "rect", xref: "x", yref: "paper", x0: wall(s.start), x1: wall(s.end),
        y0: 0, y1: 1, fillcolor: s.f.severity === "error" ? "rgba(214,69,65,0.18)" : "rgba(230,126,34,0.15)",
        line: { width: 0 }, layer: "below", name: "finding-" + s.f.id };
    });
    var annotations = [];
    meta.actions.forEach(function (a) {
      var x = a.date + " 00:00:00";
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
        line: { color: "#2c3e90", width: 1, dash: "dot" }, name: "action" });
      annotations.push({ x: x, y: 1, xref: "x", yref: "paper", yanchor: "bottom", showarrow: false,
        text: a.type === "split" ? "split " + fmt(a.ratio) : "dividend " + fmt(a.amount),
        font: { size: 10, color: "#2c3e90" } });
    });

    var layout = {
      height: 620, margin: { t: 30, b: 40, l: 60, r: 20 }, showlegend: true,
      legend: { orientation: "h", y: 1.08 }, hovermode: "closest",
      xaxis: { type: "date", rangeslider: { visible: false }, domain: [0, 1] },
      yaxis: { domain: [0.28, 1], title: "price" },
      yaxis2: { domain: [0, 0.22], title: "volume" },
      shapes: shapes, annotations: annotations
    };
    var traces = [candleTrace(view), volumeTrace(view)].concat(markerTraces);
    function describe() {
      note.textContent = showing === "view"
        ? "showing " + view.t.length + " bars of " + meta.bucket_candles + " candles each; zoom in for every candle"
        : "showing every candle";
    }
    var hash = parseHash();
    if (view.t.length) {
      layout.xaxis.range = [wall(view.t[0]),
        wall(view.t[view.t.length - 1] + meta.step_seconds * 1000)];
    }
    if (hash.from) {
      var pad = Math.max(meta.step_seconds * 1000 * 30, 3600 * 1000);
      var from = Date.parse(hash.from) - pad;
      var to = Date.parse(hash.to || hash.from) + pad;
      layout.xaxis.range = [wall(from), wall(to)];
    }
    Plotly.newPlot(chart, traces, layout, { displaylogo: false, responsive: true });
    describe();

    function useData(data, kind) {
      showing = kind;
      Plotly.restyle(chart, { x: [toDates(data.t)], open: [data.o], high: [data.h], low: [data.l],
        close: [data.c] }, [0]);
      Plotly.restyle(chart, { x: [toDates(data.t)], y: [data.v] }, [1]);
      describe();
    }
    /* Fit both y axes to the candles inside [from, to] (ms). */
    function fitY(data, from, to) {
      var lo = Infinity, hi = -Infinity, vol = 0;
      for (var i = 0; i < data.t.length; i++) {
        var ms = data.t[i];
        if (ms < from || ms > to) continue;
        if (data.l[i] < lo) lo = data.l[i];
        if (data.h[i] > hi) hi = data.h[i];
        if (data.v[i] > vol) vol = data.v[i];
      }
      if (lo === Infinity) return;
      var pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.01 || 1;
      Plotly.relayout(chart, { "yaxis.range": [lo - pad, hi + pad], "yaxis2.range": [0, vol * 1.05 || 1] });
    }
    function loadFull(then) {
      if (full) return then();
      var script = document.createElement("script");
      script.src = meta.full_src;
      script.onload = function () { full = decode(window.MDQ_FULL[meta.slug]); then(); };
      document.head.appendChild(script);
    }
    function onRange(range) {
      if (!range) {
        if (showing !== "view" && meta.bucket_candles) useData(view, "view");
        Plotly.relayout(chart, { "yaxis.autorange": true, "yaxis2.autorange": true });
        return;
      }
      var from = fromWall(range[0]), to = fromWall(range[1]);
      if (meta.bucket_candles && (to - from) / 1000 / meta.step_seconds < meta.max_view) {
        loadFull(function () { if (showing !== "full") useData(full, "full"); fitY(full, from, to); });
      } else {
        if (showing !== "view" && meta.bucket_candles) useData(view, "view");
        fitY(view, from, to);
      }
    }
    chart.on("plotly_relayout", function (ev) {
      if (ev["xaxis.autorange"]) return onRange(null);
      if (ev["xaxis.range[0]"]) return onRange([ev["xaxis.range[0]"], ev["xaxis.range[1]"]]);
      if (ev["xaxis.range"]) return onRange(ev["xaxis.range"]);
    });
    if (hash.from) onRange(layout.xaxis.range);
    findingsTable(document.getElementById("findings"), meta.findings.map(function (f) {
      return Object.assign({}, f, { page: null });
    }), "");
  }

  window.MDQ = { indexPage: indexPage, seriesPage: seriesPage, decode: decode };
})();
