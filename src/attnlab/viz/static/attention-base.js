/*
 * attnlab page, part 1 of 4 — helpers, colour scales, matrices per method, painters and downloads.
 *
 * The four parts (attention-base.js, attention-views.js, attention-panels.js, attention.js) are
 * joined in this order inside ONE function by viz/html.py (page_script), so they share that
 * function's scope and put nothing on window: any number of pages can live in one document.
 * User strings (tokens, sentences, error messages) are only ever set through textContent,
 * SVG text nodes or canvas fillText, never parsed as HTML.
 */

var KIND_LABELS = { encoder_self: "Encoder self", decoder_self: "Decoder self (masked)", cross: "Cross" };
var KIND_ORDER = ["encoder_self", "decoder_self", "cross"];
var KIND_SIDES = { // which tokens are queries (rows) and keys (columns)
  encoder_self: ["source_tokens", "source_tokens"],
  decoder_self: ["target_tokens", "target_tokens"],
  cross: ["target_tokens", "source_tokens"]
};
var METHOD_ORDER = ["attention", "raw", "rollout", "flow", "grad_x_input", "integrated_gradients", "value_norm"];
var METHOD_LABELS = { attention: "attention", raw: "raw (head mean)", rollout: "rollout", flow: "flow",
                      grad_x_input: "grad×input", integrated_gradients: "IG", value_norm: "value norm" };
var HEAD_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
// Viridis stops, the same colour map as the PNG figures (0 = dark purple, 1 = yellow).
var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
// Diverging map for signed values: -1 blue, 0 white, +1 red (ColorBrewer RdBu ends).
var NEGATIVE = [33, 102, 172], POSITIVE = [178, 24, 43];
var INK = "#1f2430", MUTED = "#6b7280", ACCENT = "#3451b2", ACCENT_SOFT = "#e8ecfa";
var LARGE_TOKENS = 64;    // above this many rows or keys a view is drawn on a canvas
var LARGE_LINKS = 1500;   // ... and above this many links too (SVG redraws cost more per line)
var THUMB_MAX_PIXELS = 128; // a thumbnail keeps at most this many pixels a side (block maximum)
var DIMMED = 0.04;        // opacity factor of the links of other tokens while one token is focused

function $(selector, root) { return root.querySelector(selector); }
function $$(selector, root) { return Array.prototype.slice.call(root.querySelectorAll(selector)); }
function headColor(head) { return HEAD_COLORS[head % HEAD_COLORS.length]; }
function clamp(value, low, high) { return Math.min(high, Math.max(low, value)); }

function setAttrs(node, attrs) {
  Object.keys(attrs || {}).forEach(function (name) {
    if (attrs[name] !== undefined && attrs[name] !== null) node.setAttribute(name, String(attrs[name]));
  });
}

function el(tag, attrs, text) {
  var node = document.createElement(tag);
  setAttrs(node, attrs);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Hide or show an element by its hidden attribute (SVG elements have no .hidden property). */
function setHidden(node, hidden) {
  if (hidden) node.setAttribute("hidden", ""); else node.removeAttribute("hidden");
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function mix(a, b, f) { return [0, 1, 2].map(function (i) { return Math.round(a[i] + f * (b[i] - a[i])); }); }

function viridis(value) {
  var t = clamp(value, 0, 1) * (VIRIDIS.length - 1);
  var i = Math.min(VIRIDIS.length - 2, Math.floor(t));
  return mix(VIRIDIS[i], VIRIDIS[i + 1], t - i);
}

function diverging(value) { // value in [-1, 1]
  var v = clamp(value, -1, 1);
  return v < 0 ? mix([255, 255, 255], NEGATIVE, -v) : mix([255, 255, 255], POSITIVE, v);
}

function cssRgb(color) { return "rgb(" + color.join(",") + ")"; }

/**
 * A colour scale. Attention weights use viridis on their own value (0..1). Other relevance maps
 * are divided by their largest magnitude: viridis when none is negative, else the diverging map
 * with zero white. scale.norm(v) is the value in [0, 1] (or [-1, 1]) the colour and links use.
 */
function makeScale(signed, maxAbs, absolute) {
  var max = absolute ? 1 : (maxAbs > 0 ? maxAbs : 1);
  return {
    diverging: !!signed, max: max,
    norm: function (v) { return v / max; },
    color: function (v) { return signed ? diverging(v / max) : viridis(v / max); }
  };
}

function tokensOf(doc, field) { return (doc && doc[field]) || []; }

/**
 * The matrices the views draw for one method: {kind: {layers: [[head][q][k]], layerNumbers,
 * layerLabels, numHeads, headLabels, queries, keys, scale}}. "attention" is doc.attention (one
 * matrix per head); any other method comes from doc.explanations (one matrix per entry).
 */
function matricesFor(doc, method) {
  var groups = {};
  function groupOf(kind) {
    var sides = KIND_SIDES[kind];
    return groups[kind] || (groups[kind] = { items: [], queries: tokensOf(doc, sides[0]), keys: tokensOf(doc, sides[1]) });
  }
  if (method === "attention") {
    (doc.attention || []).forEach(function (entry) {
      if (KIND_SIDES[entry.kind]) groupOf(entry.kind).items.push({ layer: entry.layer, heads: entry.weights });
    });
  } else {
    (doc.explanations || []).forEach(function (entry) {
      if (entry.method === method && KIND_SIDES[entry.kind]) {
        groupOf(entry.kind).items.push({ layer: entry.layer, heads: [entry.matrix], entry: entry });
      }
    });
  }
  Object.keys(groups).forEach(function (kind) {
    var group = groups[kind];
    group.items.sort(function (a, b) { return (a.layer === null ? 1e9 : a.layer) - (b.layer === null ? 1e9 : b.layer); });
    group.layers = group.items.map(function (item) { return item.heads; });
    group.layerNumbers = group.items.map(function (item) { return item.layer; });
    group.layerLabels = group.items.map(function (item) { return item.layer === null ? "all layers" : "layer " + item.layer; });
    group.notes = group.items.map(function (item) { return item.entry || null; });
    group.numHeads = group.layers.length ? group.layers[0].length : 0;
    group.headLabels = [];
    for (var h = 0; h < group.numHeads; h++) group.headLabels.push(method === "attention" ? "head " + h : METHOD_LABELS[method] || method);
    var maxAbs = 0, signed = false;
    if (method !== "attention") group.layers.forEach(function (heads) { // weights are 0..1: no scan needed
      heads.forEach(function (matrix) {
        matrix.forEach(function (row) {
          for (var k = 0; k < row.length; k++) {
            var v = row[k];
            if (v < 0) { signed = true; v = -v; }
            if (v > maxAbs) maxAbs = v;
          }
        });
      });
    });
    group.scale = makeScale(signed, maxAbs, method === "attention");
  });
  return groups;
}

/** The methods a document can show: "attention" first, then those in doc.explanations. */
function methodsOf(doc) {
  var present = {};
  (doc.explanations || []).forEach(function (entry) { present[entry.method] = true; });
  var methods = ["attention"];
  METHOD_ORDER.forEach(function (m) { if (m !== "attention" && present[m]) methods.push(m); });
  Object.keys(present).forEach(function (m) { if (methods.indexOf(m) < 0) methods.push(m); });
  return methods;
}

/** The head-mean of a list of [q][k] matrices, as [q][k]. */
function headMean(heads) {
  return heads[0].map(function (row, q) {
    return row.map(function (_, k) {
      var sum = 0;
      for (var h = 0; h < heads.length; h++) sum += heads[h][q][k];
      return sum / heads.length;
    });
  });
}

// ------------------------------------------------------------------ text measuring

/** measure(text, size, weight) in px, with the page's font, through a canvas of its own. */
function makeMeasurer(fontFamily) {
  var context = document.createElement("canvas").getContext("2d");
  return function (text, size, weight) {
    context.font = (weight || 400) + " " + size + "px " + fontFamily;
    return context.measureText(text).width;
  };
}

/** text shortened with "…" until it fits maxWidth (px). */
function fitText(measure, text, size, maxWidth, weight) {
  if (measure(text, size, weight) <= maxWidth) return text;
  var low = 0, high = text.length;
  while (low < high) { // the longest prefix that fits with the ellipsis
    var mid = Math.ceil((low + high) / 2);
    if (measure(text.slice(0, mid) + "…", size, weight) <= maxWidth) low = mid; else high = mid - 1;
  }
  return text.slice(0, low) + "…";
}

// ------------------------------------------------------------------ heatmap pixels

/**
 * A canvas with one pixel per cell of matrix [q][k] (or, above maxPixels a side, the maximum
 * magnitude of each block of cells). highlightRow: that row keeps its colour, the others fade
 * 60 % toward white. Paints into canvas when given, else into a new one; returns it.
 */
function heatmapCanvas(matrix, scale, maxPixels, highlightRow, canvas) {
  var rows = matrix.length, cols = rows ? matrix[0].length : 0;
  var blockQ = Math.max(1, Math.ceil(rows / (maxPixels || rows || 1)));
  var blockK = Math.max(1, Math.ceil(cols / (maxPixels || cols || 1)));
  var height = Math.max(1, Math.ceil(rows / blockQ)), width = Math.max(1, Math.ceil(cols / blockK));
  canvas = canvas || document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  var context = canvas.getContext("2d"), image = context.createImageData(width, height), data = image.data;
  var highlightBlock = highlightRow === null || highlightRow === undefined ? -1 : Math.floor(highlightRow / blockQ);
  for (var y = 0; y < height; y++) {
    for (var x = 0; x < width; x++) {
      var best = 0;
      for (var q = y * blockQ; q < Math.min(rows, (y + 1) * blockQ); q++) {
        var row = matrix[q];
        for (var k = x * blockK; k < Math.min(cols, (x + 1) * blockK); k++) {
          if (Math.abs(row[k]) > Math.abs(best)) best = row[k];
        }
      }
      var color = scale.color(best);
      if (highlightBlock >= 0 && y !== highlightBlock) color = mix(color, [255, 255, 255], 0.6);
      var offset = 4 * (y * width + x);
      data[offset] = color[0]; data[offset + 1] = color[1]; data[offset + 2] = color[2]; data[offset + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

// ------------------------------------------------------------------ painters

/**
 * Two painters with one interface, so that every view is drawn by one function onto the screen
 * and into its downloads: SvgPainter builds SVG elements (attributes only, no CSS, so a
 * serialised SVG stands alone), CanvasPainter draws on a 2D canvas.
 *   begin(width, height) · line(x1, y1, x2, y2, color, width, opacity, attrs)
 *   rect(x, y, w, h, style, attrs, title) · text(x, y, string, style, attrs, title)
 *   image(pixelCanvas, x, y, w, h, attrs) · group(attrs) (SVG: later shapes go into a <g>)
 * style: {fill, stroke, strokeWidth, size, weight, anchor ("start"|"middle"|"end"), rotate, rx}.
 */
function SvgPainter(root, fontFamily) {
  this.root = root; this.ns = root.namespaceURI; this.target = root; this.fontFamily = fontFamily;
}
SvgPainter.prototype.begin = function (width, height) {
  clear(this.root);
  this.target = this.root;
  setAttrs(this.root, { width: Math.ceil(width), height: Math.ceil(height),
                        viewBox: "0 0 " + Math.ceil(width) + " " + Math.ceil(height), "font-family": this.fontFamily });
};
SvgPainter.prototype.make = function (tag, attrs, title) {
  var node = document.createElementNS(this.ns, tag);
  setAttrs(node, attrs);
  if (title) { var t = document.createElementNS(this.ns, "title"); t.textContent = title; node.appendChild(t); }
  this.target.appendChild(node);
  return node;
};
SvgPainter.prototype.group = function (attrs) {
  this.target = this.root;
  this.target = this.make("g", attrs);
  return this.target;
};
SvgPainter.prototype.line = function (x1, y1, x2, y2, color, width, opacity, attrs) {
  var node = this.make("line", attrs);
  setAttrs(node, { x1: x1, y1: y1, x2: x2, y2: y2, stroke: color, "stroke-width": width.toFixed(2),
                   "stroke-opacity": opacity.toFixed(3) });
  return node;
};
SvgPainter.prototype.rect = function (x, y, w, h, style, attrs, title) {
  var node = this.make("rect", attrs, title);
  setAttrs(node, { x: x, y: y, width: w, height: h, rx: style.rx, fill: style.fill || "none",
                   stroke: style.stroke, "stroke-width": style.strokeWidth });
  return node;
};
SvgPainter.prototype.text = function (x, y, string, style, attrs, title) {
  var node = this.make("text", attrs, title);
  setAttrs(node, { x: x, y: y, "font-size": style.size || 13, "font-weight": style.weight,
                   "text-anchor": style.anchor || "start", "dominant-baseline": "middle", fill: style.fill || INK,
                   "letter-spacing": style.spacing, transform: style.rotate ? "rotate(" + style.rotate + " " + x + " " + y + ")" : null });
  node.appendChild(document.createTextNode(string));
  return node;
};
SvgPainter.prototype.image = function (pixels, x, y, w, h, attrs) {
  var node = this.make("image", attrs);
  setAttrs(node, { x: x, y: y, width: w, height: h, preserveAspectRatio: "none", "image-rendering": "pixelated",
                   style: "image-rendering:pixelated" });
  node.setAttribute("href", pixels.toDataURL("image/png"));
  return node;
};

/**
 * view (optional) draws only a window of a tall drawing: {scale, top, height} — the drawing is
 * scaled by scale and the canvas shows the band of CSS height ``height`` starting ``top`` CSS px
 * down. A canvas is rasterised whole, unlike the tiles of an SVG, so a 7000-px head view drawn at
 * once costs seconds; its visible band costs milliseconds.
 */
function CanvasPainter(canvas, ratio, fontFamily, view) {
  this.canvas = canvas; this.ratio = ratio || 1; this.fontFamily = fontFamily; this.view = view || null;
}
CanvasPainter.prototype.begin = function (width, height) {
  var canvas = this.canvas, ratio = this.ratio, view = this.view;
  var scale = view ? view.scale : 1, cssHeight = view ? view.height : height * scale;
  canvas.width = Math.ceil(width * scale * ratio); canvas.height = Math.ceil(cssHeight * ratio);
  canvas.style.width = Math.ceil(width * scale) + "px";
  canvas.style.height = Math.ceil(cssHeight) + "px";
  this.width = width; this.height = height;
  this.context = canvas.getContext("2d");
  this.context.setTransform(ratio * scale, 0, 0, ratio * scale, 0, -ratio * (view ? view.top : 0));
  this.context.fillStyle = "#ffffff";
  this.context.fillRect(0, 0, width, height);
};
/** The band [top, bottom] of the drawing (its own units) that this painter shows, or null: all. */
CanvasPainter.prototype.band = function () {
  var view = this.view;
  return view ? { top: view.top / view.scale, bottom: (view.top + view.height) / view.scale } : null;
};
CanvasPainter.prototype.group = function () { return null; };
CanvasPainter.prototype.line = function (x1, y1, x2, y2, color, width, opacity) {
  var c = this.context;
  c.globalAlpha = opacity; c.strokeStyle = color; c.lineWidth = width;
  c.beginPath(); c.moveTo(x1, y1); c.lineTo(x2, y2); c.stroke();
  c.globalAlpha = 1;
};
/**
 * Many lines at once: links [{x1, y1, x2, y2, color, width, opacity}], sorted by style so that
 * the context's state changes rarely. Each line is its own stroke, as each is its own SVG
 * element: one path of thousands of crossing segments is far slower for the rasteriser and
 * would not blend where lines overlap.
 */
CanvasPainter.prototype.lines = function (links) {
  var c = this.context, style = "";
  links.map(function (link) {
    return { link: link, key: link.color + "|" + link.opacity.toFixed(3) + "|" + link.width.toFixed(2) };
  }).sort(function (a, b) { return a.key < b.key ? -1 : a.key > b.key ? 1 : 0; }).forEach(function (item) {
    var l = item.link;
    if (item.key !== style) {
      style = item.key;
      c.globalAlpha = l.opacity; c.strokeStyle = l.color; c.lineWidth = l.width;
    }
    c.beginPath(); c.moveTo(l.x1, l.y1); c.lineTo(l.x2, l.y2); c.stroke();
  });
  c.globalAlpha = 1;
};
CanvasPainter.prototype.rect = function (x, y, w, h, style) {
  var c = this.context;
  c.beginPath();
  if (style.rx && c.roundRect) c.roundRect(x, y, w, h, style.rx); else c.rect(x, y, w, h);
  if (style.fill && style.fill !== "none") { c.fillStyle = style.fill; c.fill(); }
  if (style.stroke) { c.strokeStyle = style.stroke; c.lineWidth = style.strokeWidth || 1; c.stroke(); }
};
CanvasPainter.prototype.text = function (x, y, string, style) {
  var c = this.context;
  c.save();
  c.font = (style.weight || 400) + " " + (style.size || 13) + "px " + this.fontFamily;
  if (style.spacing && "letterSpacing" in c) c.letterSpacing = style.spacing;
  c.fillStyle = style.fill || INK;
  c.textAlign = style.anchor === "end" ? "right" : style.anchor === "middle" ? "center" : "left";
  c.textBaseline = "middle";
  c.translate(x, y);
  if (style.rotate) c.rotate(style.rotate * Math.PI / 180);
  c.fillText(string, 0, 0);
  c.restore();
};
CanvasPainter.prototype.image = function (pixels, x, y, w, h) {
  var c = this.context;
  c.imageSmoothingEnabled = false;
  c.drawImage(pixels, x, y, w, h);
};

// ------------------------------------------------------------------ downloads

/**
 * Download buttons for a view: PNG (the view painted on a canvas at twice its size, then
 * canvas.toBlob) and SVG (the view painted as SVG elements, serialised). paint(painter) draws
 * the view as it is now; name(): the file name without extension.
 */
function downloadButtons(app, paint, name) {
  var bar = el("span", { class: "downloads", "data-testid": "downloads" });
  [["png", "PNG"], ["svg", "SVG"]].forEach(function (pair) {
    var button = el("button", { type: "button", class: "download", "data-format": pair[0],
                                title: "download this view as " + pair[1] }, pair[1]);
    button.addEventListener("click", function () { exportView(app, paint, name(), pair[0]); });
    bar.appendChild(button);
  });
  return bar;
}

function exportView(app, paint, name, format) {
  if (format === "png") {
    var canvas = document.createElement("canvas");
    paint(new CanvasPainter(canvas, 2, app.fontFamily));
    canvas.toBlob(function (blob) { saveBlob(app.root, blob, name + ".png"); }, "image/png");
  } else {
    var svgRoot = document.createElementNS(app.svgNamespace, "svg");
    var painter = new SvgPainter(svgRoot, app.fontFamily);
    paint(painter);
    var background = document.createElementNS(app.svgNamespace, "rect");
    setAttrs(background, { width: "100%", height: "100%", fill: "#ffffff" });
    svgRoot.insertBefore(background, svgRoot.firstChild);
    var text = new XMLSerializer().serializeToString(svgRoot);
    saveBlob(app.root, new Blob([text], { type: "image/svg+xml" }), name + ".svg");
  }
}

function saveBlob(root, blob, filename) {
  var url = URL.createObjectURL(blob);
  var link = el("a", { download: filename, hidden: "" });
  link.setAttribute("href", url);
  root.appendChild(link);
  link.click();
  root.removeChild(link);
  setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
}

function safeName(text) { return String(text).replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "view"; }
