/*
 * attnlab page, part 2 of 4 — the three views of one viewer (see attention.js for the viewer):
 *  - head view: query tokens (left) joined to key tokens (right) by lines whose opacity is the
 *    weight, one colour per head; SVG elements for small inputs, one canvas for long ones
 *    (more than LARGE_TOKENS tokens or LARGE_LINKS links); links below the threshold are left out;
 *  - model view: every layer x head of the current kind as a small heatmap;
 *  - enlarged heatmap of one (layer, head) with token labels.
 * Each view has a paint(painter) that draws it onto the screen and into its PNG/SVG downloads.
 */

// ------------------------------------------------------------------ head view

/** Geometry of the head view: column widths from the measured tokens and headings. */
function headLayout(app, group, kind) {
  var rows = Math.max(group.queries.length, group.keys.length);
  var large = rows > LARGE_TOKENS, size = large ? 11 : 13, titleSize = 11;
  var titles = kind === "cross" ? ["TARGET (QUERIES)", "SOURCE (KEYS)"] : ["QUERIES", "KEYS"];
  var maxToken = 220; // a longer token is shortened with "…" (its full text in the tooltip)
  function column(tokens, title) {
    var widest = tokens.reduce(function (m, t) { return Math.max(m, app.measure(t, size)); }, 0);
    var titleWidth = app.measure(title, titleSize, 600) + 0.5 * title.length; // + letter spacing
    return Math.ceil(Math.max(Math.min(widest, maxToken) + 20, titleWidth + 18, 56));
  }
  var queryColumn = column(group.queries, titles[0]), keyColumn = column(group.keys, titles[1]);
  var gap = large ? 240 : 190, top = 34, rowHeight = large ? 14 : 24;
  return { large: large, size: size, titleSize: titleSize, titles: titles, maxToken: maxToken,
           rowHeight: rowHeight, top: top, queryX: queryColumn, keyX: queryColumn + gap,
           queryColumn: queryColumn, keyColumn: keyColumn,
           width: queryColumn + gap + keyColumn, height: top + rows * rowHeight + 8 };
}

/** The links at or above the threshold: [{head, q, k, w, n}], n = |scale.norm(w)| in [0, 1]. */
function headLinks(group, layer, hidden, threshold) {
  var links = [], weights = group.layers[layer], scale = group.scale;
  weights.forEach(function (matrix, head) {
    if (hidden[head]) return;
    for (var q = 0; q < matrix.length; q++) {
      var row = matrix[q];
      for (var k = 0; k < row.length; k++) {
        var n = Math.min(1, Math.abs(scale.norm(row[k])));
        if (n > 0 && n >= threshold) links.push({ head: head, q: q, k: k, w: row[k], n: n });
      }
    }
  });
  return links;
}

function linkColor(group, link) {
  if (!group.scale.diverging) return group.numHeads > 1 ? headColor(link.head) : ACCENT;
  return cssRgb(link.w < 0 ? NEGATIVE : POSITIVE);
}

function isFocused(focus, link) {
  return focus.side === "query" ? link.q === focus.index : link.k === focus.index;
}

/**
 * Draw the head view. interactive (the on-screen SVG): elements carry classes and data
 * attributes, and focus is shown by CSS classes afterwards; otherwise focus is painted in.
 */
function paintHeadView(painter, viewer, layout, links, focus, interactive) {
  var group = viewer.group(), state = viewer.state;
  painter.begin(layout.width, layout.height);
  painter.text(layout.queryX - 8, 14, layout.titles[0], { size: layout.titleSize, weight: 600, fill: MUTED,
               anchor: "end", spacing: "0.5px" }, { class: "column-title", "data-column": "query" });
  painter.text(layout.keyX + 8, 14, layout.titles[1], { size: layout.titleSize, weight: 600, fill: MUTED,
               spacing: "0.5px" }, { class: "column-title", "data-column": "key" });
  painter.group({ class: "links" });
  var drawn = [], top = layout.top, row = layout.rowHeight;
  var band = painter.band ? painter.band() : null; // a canvas showing a window: skip what lies outside
  layout.band = band;
  links.forEach(function (link) {
    if (band && (top + Math.max(link.q, link.k) * row < band.top - 4 || top + Math.min(link.q, link.k) * row > band.bottom + 4)) return;
    var mine = focus && isFocused(focus, link);
    var opacity = link.n * (focus && !interactive && !mine ? DIMMED : 1);
    drawn.push({ x1: layout.queryX + 4, y1: top + link.q * row, x2: layout.keyX - 4, y2: top + link.k * row,
                 color: linkColor(group, link), width: 1 + 2.5 * link.n, opacity: opacity, mine: mine, link: link });
  });
  if (painter.lines) { // canvas: the focused token's links last, on top
    painter.lines(drawn.filter(function (d) { return !d.mine; }));
    painter.lines(drawn.filter(function (d) { return d.mine; }));
  } else {
    drawn.forEach(function (d) {
      painter.line(d.x1, d.y1, d.x2, d.y2, d.color, d.width, d.opacity, interactive ? {
        class: "link", "data-head": d.link.head, "data-q": d.link.q, "data-k": d.link.k,
        "data-w": +d.link.w.toFixed(6) } : null);
    });
  }
  painter.group({ class: "tokens" });
  paintTokenColumn(painter, viewer, layout, group.queries, "query", focus, interactive);
  paintTokenColumn(painter, viewer, layout, group.keys, "key", focus, interactive);
  state.drawnLinks = links.length;
}

function paintTokenColumn(painter, viewer, layout, tokens, side, focus, interactive) {
  var query = side === "query", width = (query ? layout.queryColumn : layout.keyColumn) - 8;
  var x = query ? layout.queryX - 8 : layout.keyX + 8, row = layout.rowHeight;
  tokens.forEach(function (token, index) {
    var y = layout.top + index * row;
    if (layout.band && (y < layout.band.top - row || y > layout.band.bottom + row)) return;
    var active = !interactive && focus && focus.side === side && focus.index === index;
    var shown = fitText(viewer.app.measure, token, layout.size, layout.maxToken);
    var attrs = interactive ? { "data-side": side, "data-index": index } : null;
    painter.rect(query ? x - width + 4 : x - 4, y - row / 2 + 2, width, row - 4,
                 { rx: 4, fill: active ? ACCENT_SOFT : "none" }, interactive ? { class: "token-bg", "data-side": side,
                 "data-index": index, "pointer-events": "all" } : null);
    painter.text(x, y, shown, { size: layout.size, anchor: query ? "end" : "start", weight: active ? 700 : null,
                 fill: active ? ACCENT : INK }, attrs && { class: "token", "data-side": side, "data-index": index },
                 shown === token ? null : token);
  });
}

/** Classes that show the focus on the interactive SVG (cheap: no redraw). */
function focusSvg(svgRoot, focus) {
  var attribute = focus && focus.side === "query" ? "q" : "k";
  $$(".link", svgRoot).forEach(function (line) {
    var mine = !!focus && Number(line.dataset[attribute]) === focus.index;
    line.classList.toggle("highlighted", mine);
    line.classList.toggle("dimmed", !!focus && !mine);
  });
  $$(".token, .token-bg", svgRoot).forEach(function (node) {
    node.classList.toggle("active", !!focus && node.dataset.side === focus.side && Number(node.dataset.index) === focus.index);
  });
}

/** (side, index) under a mouse event on the canvas head view (showing its band), or null. */
function canvasHit(canvas, head, event, group) {
  var box = canvas.getBoundingClientRect(), layout = head.layout, scale = head.scale;
  var x = (event.clientX - box.left) / scale, y = (event.clientY - box.top + head.bandTop) / scale;
  var index = Math.round((y - layout.top) / layout.rowHeight);
  if (x <= layout.queryX + 2 && index >= 0 && index < group.queries.length) return { side: "query", index: index };
  if (x >= layout.keyX - 2 && index >= 0 && index < group.keys.length) return { side: "key", index: index };
  return null;
}

// ------------------------------------------------------------------ model view

var THUMB_SIZE = 76, THUMB_GAP = 6;

/** Paint every thumbnail, in slices of about 25 ms so that a long input never freezes the page. */
function paintThumbs(viewer, thumbs, done) {
  var generation = (viewer.thumbGeneration = (viewer.thumbGeneration || 0) + 1);
  var index = 0;
  function slice() {
    if (generation !== viewer.thumbGeneration) return; // a newer redraw took over
    var start = performance.now();
    while (index < thumbs.length && (index === 0 || performance.now() - start < 25)) {
      var thumb = thumbs[index++];
      heatmapCanvas(thumb.matrix, thumb.scale, THUMB_MAX_PIXELS, thumb.row, thumb.canvas);
      thumb.canvas.dataset.row = thumb.row === null ? "" : String(thumb.row);
    }
    if (index < thumbs.length) setTimeout(slice, 0); else done();
  }
  slice();
}

/** The row a step highlights in the current kind, or null. */
function stepRow(viewer) {
  var state = viewer.state, group = viewer.group();
  if (state.step === null || state.kind === "encoder_self") return null;
  return state.step < group.queries.length ? state.step : null;
}

function paintModelView(painter, viewer) {
  var group = viewer.group(), measure = viewer.app.measure, row = stepRow(viewer);
  var left = Math.ceil(group.layerLabels.reduce(function (m, label) { return Math.max(m, measure(label, 12)); }, 0)) + 12;
  var top = 22, cell = THUMB_SIZE + THUMB_GAP;
  painter.begin(left + group.numHeads * cell, top + group.layers.length * cell);
  group.headLabels.forEach(function (label, head) {
    painter.text(left + head * cell + THUMB_SIZE / 2, 10, label, { size: 12, anchor: "middle",
                 fill: group.numHeads > 1 ? headColor(head) : MUTED });
  });
  group.layers.forEach(function (heads, layer) {
    painter.text(left - 8, top + layer * cell + THUMB_SIZE / 2, group.layerLabels[layer], { size: 12, anchor: "end", fill: MUTED });
    heads.forEach(function (matrix, head) {
      painter.image(heatmapCanvas(matrix, group.scale, THUMB_MAX_PIXELS, row), left + head * cell, top + layer * cell,
                    THUMB_SIZE, THUMB_SIZE);
    });
  });
}

// ------------------------------------------------------------------ heatmaps (enlarged, difference map)

/**
 * A labelled heatmap. spec: {queries, keys, matrix [q][k], scale, row (highlighted row or null),
 * measure}. Returns its layout (cell size, margins) for hit-testing.
 */
function heatmapLayout(spec) {
  var cell = clamp(Math.floor(560 / Math.max(spec.keys.length, 1)), 1, 34);
  var every = cell >= 12 ? 1 : Math.ceil(12 / cell); // label every n-th token when cells are small
  var widest = function (tokens) {
    return tokens.reduce(function (m, t) { return Math.max(m, spec.measure(t, 11)); }, 8);
  };
  var left = Math.ceil(Math.min(160, widest(spec.queries)) + 12);
  var top = Math.ceil(Math.min(160, widest(spec.keys)) * 0.87 + 14); // labels rotated by -60 degrees
  var right = left + cell * spec.keys.length + 12;
  spec.keys.forEach(function (token, k) { // a rotated label reaches cos(60°) = half its length to the right
    if (k % every === 0) right = Math.max(right, left + (k + 0.5) * cell + 0.5 * Math.min(160, spec.measure(token, 11)) + 8);
  });
  return { cell: cell, every: every, left: left, top: top, rows: spec.queries.length, cols: spec.keys.length,
           width: Math.ceil(right), height: top + cell * spec.queries.length + 4 };
}

function paintHeatmap(painter, spec, interactive) {
  var layout = heatmapLayout(spec), cell = layout.cell, row = spec.row, scale = spec.scale;
  painter.begin(layout.width, layout.height);
  spec.keys.forEach(function (token, k) {
    if (k % layout.every) return;
    var x = layout.left + (k + 0.5) * cell, y = layout.top - 6;
    var shown = fitText(spec.measure, token, 11, 160);
    painter.text(x, y, shown, { size: 11, rotate: -60 }, { class: "key-label" }, shown === token ? null : token);
  });
  spec.queries.forEach(function (token, q) {
    if (q % layout.every) return;
    var shown = fitText(spec.measure, token, 11, 160);
    painter.text(layout.left - 6, layout.top + (q + 0.5) * cell, shown, { size: 11, anchor: "end",
                 weight: q === row ? 700 : null, fill: q === row ? ACCENT : INK }, { class: "query-label" },
                 shown === token ? null : token);
  });
  if (interactive && spec.queries.length * spec.keys.length <= 2500) { // one element per cell, with a tooltip
    spec.matrix.forEach(function (values, q) {
      values.forEach(function (weight, k) {
        var color = scale.color(weight);
        if (row !== null && q !== row) color = mix(color, [255, 255, 255], 0.6);
        painter.rect(layout.left + k * cell, layout.top + q * cell, cell, cell, { fill: cssRgb(color) },
                     { class: "cell", "data-q": q, "data-k": k, "data-w": weight },
                     spec.queries[q] + " → " + spec.keys[k] + ": " + formatValue(weight));
      });
    });
  } else {
    painter.image(heatmapCanvas(spec.matrix, scale, 0, row), layout.left, layout.top, cell * layout.cols,
                  cell * layout.rows, { class: "cells" });
  }
  if (row !== null) {
    painter.rect(layout.left - 1, layout.top + row * cell - 1, cell * layout.cols + 2, cell + 2,
                 { stroke: ACCENT, strokeWidth: 2 }, { class: "step-row", "data-q": row });
  }
  return layout;
}

/** The spec of the enlarged heatmap of one (layer, head) of a viewer. */
function enlargedSpec(viewer, layer, head) {
  var group = viewer.group();
  return { queries: group.queries, keys: group.keys, matrix: group.layers[layer][head], scale: group.scale,
           row: stepRow(viewer), measure: viewer.app.measure };
}

/** The legend of a scale: "0 [viridis] 1", "0 [viridis] max" or "-m [blue white red] +m". */
function renderLegend(legend, scale, absolute) {
  clear(legend);
  var low = scale.diverging ? -scale.max : 0, high = absolute ? 1 : scale.max;
  legend.appendChild(el("span", { "data-testid": "legend-low" }, formatValue(low)));
  legend.appendChild(el("span", { class: "ramp" + (scale.diverging ? " diverging" : "") }));
  legend.appendChild(el("span", { "data-testid": "legend-high" }, formatValue(high)));
}

function formatValue(value) {
  if (value === 0) return "0";
  var magnitude = Math.abs(value);
  if (magnitude >= 0.01 && magnitude < 1000) return String(+value.toFixed(3));
  return magnitude >= 1e-4 && magnitude < 1000 ? String(+value.toPrecision(3)) : value.toExponential(2);
}
