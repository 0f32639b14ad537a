/*
 * attnlab page, part 4 of 4 — the viewer and the mounting of every page root.
 *
 * A viewer owns the controls, the head view, the model view and the enlarged heatmap built from
 * one attention document (the <template data-attnlab-template=viewer> of page.html, cloned).
 * A page root is an element [data-attnlab-root] holding its data in
 * <script type="application/json" data-attnlab-data>: {"doc", "compare", "explorer"}. Every
 * root not yet mounted is mounted when this script runs (or at DOMContentLoaded), so one
 * document (a notebook) can hold any number of independent pages.
 */

function Viewer(app, box) {
  this.app = app;
  this.box = box;
  this.state = null;
  this.onThumbClick = null; // the explorer's ablation replaces "click a thumbnail to enlarge it"
  this.ablated = {};        // "kind|layer|head" -> true, drawn crossed out
  this.wire();
}

Viewer.prototype.find = function (testid) { return $("[data-testid=" + testid + "]", this.box); };
Viewer.prototype.group = function () { return this.state.groups[this.state.kind]; };

/** Listeners that do not depend on the document: threshold, hover, downloads. */
Viewer.prototype.wire = function () {
  var self = this, app = this.app;
  var slider = this.find("threshold");
  slider.addEventListener("input", function () { self.state.threshold = Number(slider.value); self.renderHeadView(); });
  var svgRoot = $(".head-svg", this.box), canvas = $(".head-canvas", this.box);
  svgRoot.addEventListener("mouseover", function (event) {
    var side = event.target.getAttribute && event.target.getAttribute("data-side");
    self.hover(side ? { side: side, index: Number(event.target.getAttribute("data-index")) } : null);
  });
  svgRoot.addEventListener("mouseleave", function () { self.hover(null); });
  canvas.addEventListener("mousemove", function (event) {
    if (self.head && self.head.canvas) self.hover(canvasHit(canvas, self.head, event, self.group()));
  });
  canvas.addEventListener("mouseleave", function () { self.hover(null); });
  var pending = false; // redraw the canvas band when the head view scrolls or the page resizes
  function redraw(full) {
    if (pending || !self.head || !self.head.canvas) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; if (full) self.renderHeadView(); else self.paintCanvasBand(); });
  }
  $(".head-scroll", this.box).addEventListener("scroll", function () { redraw(false); });
  window.addEventListener("resize", function () { redraw(true); });
  var kindName = function () { return safeName(self.state.kind + "-" + self.group().layerLabels[self.state.layer]); };
  $("[data-slot=head-downloads]", this.box).appendChild(downloadButtons(app, function (painter) {
    paintHeadView(painter, self, self.head.layout, self.head.links, self.currentFocus(), false);
  }, function () { return "head-view-" + kindName(); }));
  $("[data-slot=model-downloads]", this.box).appendChild(downloadButtons(app, function (painter) {
    paintModelView(painter, self);
  }, function () { return "model-view-" + safeName(self.state.kind + "-" + self.state.method); }));
  $("[data-slot=enlarged-downloads]", this.box).appendChild(downloadButtons(app, function (painter) {
    paintHeatmap(painter, enlargedSpec(self, self.state.enlarged.layer, self.state.enlarged.head), false);
  }, function () { return "heatmap-" + kindName() + "-head-" + self.state.enlarged.head; }));
  wireSteps(this);
  var heatCanvas = $(".heatmap-canvas", this.box);
  heatCanvas.addEventListener("mousemove", function (event) { self.readCell(heatCanvas, event); });
};

Viewer.prototype.render = function (doc) {
  doc = doc || {};
  var previous = this.state, methods = methodsOf(doc);
  var hasAttention = (doc.attention || []).some(function (entry) { return KIND_SIDES[entry.kind]; });
  this.find("empty").hidden = hasAttention;
  this.find("content").hidden = !hasAttention;
  if (!hasAttention) { this.state = null; return; }
  var steps = doc.decoding && doc.decoding.steps ? doc.decoding.steps.length : 0;
  this.state = {
    doc: doc, methods: methods, method: previous && methods.indexOf(previous.method) >= 0 ? previous.method : "attention",
    kind: previous ? previous.kind : null, layer: previous ? previous.layer : 0, hidden: previous ? previous.hidden : {},
    threshold: previous ? previous.threshold : null, enlarged: null, focus: null,
    step: previous && previous.step !== null && previous.step < steps ? previous.step : null
  };
  this.renderSentences();
  renderSteps(this);
  this.useMethod(this.state.method, true);
};

Viewer.prototype.renderSentences = function () {
  var doc = this.state.doc;
  this.find("source-text").textContent = (doc.source_tokens || []).join(" ");
  var target = (doc.target_tokens || []).join(" ");
  this.find("target-text").textContent = target;
  $("[data-row=target]", this.box).hidden = !target;
  var translation = typeof doc.translation === "string" ? doc.translation : "";
  this.find("translation").textContent = translation;
  $("[data-row=translation]", this.box).hidden = !translation;
};

/** Show the matrices of one method (attention or an explanation) in every view. */
Viewer.prototype.useMethod = function (method, keepPlace) {
  var state = this.state, self = this;
  state.method = method;
  state.groups = matricesFor(state.doc, method);
  state.kinds = KIND_ORDER.filter(function (kind) { return state.groups[kind]; });
  var switcher = this.find("method-switch");
  switcher.hidden = state.methods.length < 2;
  clear(switcher);
  state.methods.forEach(function (name) {
    var button = el("button", { type: "button", "data-method": name, "aria-pressed": name === method,
                                class: name === method ? "active" : null }, METHOD_LABELS[name] || name);
    button.addEventListener("click", function () { self.useMethod(name, true); });
    switcher.appendChild(button);
  });
  var kind = state.kinds.indexOf(state.kind) >= 0 ? state.kind : state.kinds[0];
  this.selectKind(kind, keepPlace);
};

Viewer.prototype.selectKind = function (kind, keepLayer) {
  var state = this.state, self = this;
  var layer = keepLayer && state.kind === kind ? state.layer : 0;
  state.kind = kind;
  state.enlarged = null;
  var switcher = this.find("kind-switch");
  clear(switcher);
  state.kinds.forEach(function (name) {
    var button = el("button", { type: "button", "data-kind": name, "aria-pressed": name === kind,
                                class: name === kind ? "active" : null }, KIND_LABELS[name]);
    button.addEventListener("click", function () { self.selectKind(name); });
    switcher.appendChild(button);
  });
  var group = this.group(), select = this.find("layer-select");
  clear(select);
  group.layerLabels.forEach(function (label, index) { select.appendChild(el("option", { value: index }, label)); });
  select.onchange = function () { self.selectLayer(Number(select.value)); };
  state.layer = Math.min(layer, group.layers.length - 1);
  this.renderHeadChips();
  this.renderModelView();
  this.selectLayer(state.layer);
  updateStepPanel(this);
};

Viewer.prototype.selectLayer = function (layer) {
  var state = this.state, group = this.group();
  state.layer = layer;
  this.find("layer-select").value = String(layer);
  $$(".thumb", this.box).forEach(function (thumb) {
    thumb.classList.toggle("current-layer", Number(thumb.dataset.layer) === layer);
  });
  var note = this.find("method-note"), entry = group.notes[layer];
  var text = entry ? [entry.note || "", typeof entry.completeness_error === "number" ?
    "completeness error " + formatValue(entry.completeness_error) : ""].filter(Boolean).join(" · ") : "";
  note.textContent = text;
  note.hidden = !text;
  this.renderHeadView();
  updateStepPanel(this);
};

/** Select a kind and a layer by its number (the compare page keeps two viewers on one place). */
Viewer.prototype.show = function (kind, layerNumber) {
  if (!this.state || !this.state.groups[kind]) return false;
  if (this.state.kind !== kind) this.selectKind(kind);
  var index = this.group().layerNumbers.indexOf(layerNumber);
  if (index >= 0) this.selectLayer(index);
  return index >= 0;
};

Viewer.prototype.renderHeadChips = function () {
  var state = this.state, self = this, group = this.group();
  var chips = this.find("head-chips");
  clear(chips);
  group.headLabels.forEach(function (label, head) {
    var chip = el("label", { class: "head-chip", "data-head": head, style: "--chip:" + headColor(head) });
    var box = el("input", { type: "checkbox", "data-head": head });
    box.checked = !state.hidden[head];
    chip.classList.toggle("off", !box.checked);
    box.addEventListener("change", function () {
      state.hidden[head] = !box.checked;
      chip.classList.toggle("off", !box.checked);
      self.renderHeadView();
    });
    chip.appendChild(box);
    chip.appendChild(el("span", { class: "swatch" }));
    chip.appendChild(el("span", {}, label));
    chips.appendChild(chip);
  });
};

/** Links thinner than this are left out: the user's slider, else 0.01 (0.05 for long inputs). */
Viewer.prototype.threshold = function () {
  var group = this.group();
  if (this.state.threshold !== null) return this.state.threshold;
  return Math.max(group.queries.length, group.keys.length) > LARGE_TOKENS ? 0.05 : 0.01;
};

Viewer.prototype.currentFocus = function () {
  if (this.state.focus) return this.state.focus;
  var row = stepRow(this);
  return row === null ? null : { side: "query", index: row };
};

Viewer.prototype.hover = function (focus) {
  var old = this.state && this.state.focus;
  if (!this.state || (old === focus) || (old && focus && old.side === focus.side && old.index === focus.index)) return;
  this.state.focus = focus;
  this.refreshFocus();
};

Viewer.prototype.refreshFocus = function () {
  if (!this.head) return;
  if (this.head.canvas) this.paintCanvasBand();
  else focusSvg($(".head-svg", this.box), this.currentFocus());
};

/** Canvas head view: draw the band that the scroll box shows (the canvas sticks to its top). */
Viewer.prototype.paintCanvasBand = function () {
  var head = this.head, scroller = $(".head-scroll", this.box), canvas = $(".head-canvas", this.box);
  var full = head.layout.height * head.scale;
  var visible = Math.max(1, Math.min(full, scroller.clientHeight || full));
  head.bandTop = clamp(scroller.scrollTop, 0, Math.max(0, full - visible));
  var ratio = clamp(window.devicePixelRatio || 1, 1, 3);
  var painter = new CanvasPainter(canvas, ratio, this.app.fontFamily, { scale: head.scale, top: head.bandTop, height: visible });
  paintHeadView(painter, this, head.layout, head.links, this.currentFocus(), false);
};

/** Head view: SVG for small inputs, a canvas for long ones; published layout for tests and tools. */
Viewer.prototype.renderHeadView = function () {
  var group = this.group(), state = this.state, app = this.app;
  var threshold = this.threshold();
  var slider = this.find("threshold");
  slider.value = String(threshold);
  this.find("threshold-value").textContent = threshold.toFixed(3);
  var layout = headLayout(app, group, state.kind);
  var links = headLinks(group, state.layer, state.hidden, threshold);
  var useCanvas = layout.large || links.length > LARGE_LINKS;
  var svgRoot = $(".head-svg", this.box), canvasBox = $(".head-canvas-box", this.box);
  var scroller = $(".head-scroll", this.box);
  setHidden(svgRoot, useCanvas);
  canvasBox.hidden = !useCanvas;
  state.focus = null;
  var scale = 1;
  if (useCanvas) {
    clear(svgRoot);
    scale = Math.min(1, (scroller.clientWidth || layout.width) / layout.width);
    canvasBox.style.width = Math.ceil(layout.width * scale) + "px";
    canvasBox.style.height = Math.ceil(layout.height * scale) + "px";
    this.head = { layout: layout, links: links, canvas: true, scale: scale, bandTop: 0 };
    this.paintCanvasBand();
  } else {
    this.head = { layout: layout, links: links, canvas: false };
    paintHeadView(new SvgPainter(svgRoot, app.fontFamily), this, layout, links, null, true);
    focusSvg(svgRoot, this.currentFocus());
  }
  var shown = useCanvas ? canvasBox : svgRoot;
  shown.dataset.layout = JSON.stringify({ top: layout.top, row: layout.rowHeight, queryX: layout.queryX,
                                          keyX: layout.keyX, width: layout.width, height: layout.height, scale: scale });
  var view = this.find("head-view");
  view.dataset.mode = useCanvas ? "canvas" : "svg";
  view.dataset.links = String(links.length);
  view.dataset.drawn = "1";
};

/** Model view: a layers x heads grid of thumbnails of the current kind and method. */
Viewer.prototype.renderModelView = function () {
  var state = this.state, group = this.group(), self = this;
  var grid = this.find("model-view");
  clear(grid);
  delete grid.dataset.drawn;
  grid.style.gridTemplateColumns = "auto repeat(" + group.numHeads + ", auto)";
  grid.appendChild(el("span", { class: "axis" }, ""));
  group.headLabels.forEach(function (label, head) {
    grid.appendChild(el("span", { class: "axis", style: group.numHeads > 1 ? "color:" + headColor(head) : null }, label));
  });
  var thumbs = [], row = stepRow(this);
  group.layers.forEach(function (heads, layer) {
    grid.appendChild(el("span", { class: "axis" }, group.layerLabels[layer]));
    heads.forEach(function (matrix, head) {
      var ablated = self.ablated[state.kind + "|" + group.layerNumbers[layer] + "|" + head];
      var canvas = el("canvas", { class: "thumb" + (ablated ? " ablated" : ""), "data-layer": layer, "data-head": head,
                                  title: group.layerLabels[layer] + ", " + group.headLabels[head] });
      canvas.addEventListener("click", function () {
        if (self.onThumbClick) self.onThumbClick(layer, head); else self.enlarge(layer, head);
      });
      grid.appendChild(canvas);
      thumbs.push({ canvas: canvas, matrix: matrix, scale: group.scale, row: row });
    });
  });
  paintThumbs(this, thumbs, function () { grid.dataset.drawn = "1"; });
  renderLegend(this.find("legend"), group.scale, state.method === "attention");
  this.renderHints();
  this.find("enlarged").hidden = true;
};

/** What the colours and lines mean for the method shown. */
Viewer.prototype.renderHints = function () {
  var state = this.state, group = this.group(), name = METHOD_LABELS[state.method] || state.method;
  var attention = state.method === "attention", signed = group.scale.diverging;
  var sign = signed ? "red positive, blue negative, white zero" : "brighter is higher";
  this.find("head-hint").textContent = attention ?
    "Queries on the left attend to keys on the right; line opacity is the weight, one colour per head." :
    "Rows (left) and columns (right) of the " + name + " map; line opacity is |value| / the largest" +
    (signed ? ", red positive, blue negative." : ".");
  this.find("model-hint").textContent = attention ?
    "Every layer (rows) and head (columns) of the selected kind; brighter is more attention." :
    "The " + name + " map of each layer of the selected kind, scaled to its largest magnitude: " + sign + ".";
};

/** Repaint the thumbnails and the open heatmap after the step changed. */
Viewer.prototype.repaintForStep = function () {
  var group = this.group(), row = stepRow(this), grid = this.find("model-view");
  delete grid.dataset.drawn;
  var thumbs = $$(".thumb", this.box).map(function (canvas) {
    return { canvas: canvas, matrix: group.layers[Number(canvas.dataset.layer)][Number(canvas.dataset.head)],
             scale: group.scale, row: row };
  });
  paintThumbs(this, thumbs, function () { grid.dataset.drawn = "1"; });
  if (this.state.enlarged) this.enlarge(this.state.enlarged.layer, this.state.enlarged.head);
  this.refreshFocus();
};

/** Enlarged heatmap of one (layer, head): SVG cells with tooltips when small, else a canvas. */
Viewer.prototype.enlarge = function (layer, head) {
  var state = this.state, group = this.group(), self = this;
  state.enlarged = { layer: layer, head: head };
  $$(".thumb", this.box).forEach(function (thumb) {
    thumb.classList.toggle("selected", Number(thumb.dataset.layer) === layer && Number(thumb.dataset.head) === head);
  });
  if (state.layer !== layer) this.selectLayer(layer);
  var panel = this.find("enlarged");
  panel.hidden = false;
  this.find("enlarged-title").textContent = KIND_LABELS[state.kind] + " · " + group.layerLabels[layer] + " · " +
    group.headLabels[head];
  this.find("enlarged-close").onclick = function () {
    panel.hidden = true;
    state.enlarged = null;
    $$(".thumb.selected", self.box).forEach(function (t) { t.classList.remove("selected"); });
  };
  var svgRoot = $(".heatmap-svg", panel), canvas = $(".heatmap-canvas", panel);
  var large = Math.max(group.queries.length, group.keys.length) > LARGE_TOKENS;
  setHidden(svgRoot, large);
  canvas.hidden = !large;
  this.find("enlarged-readout").textContent = large ? "move the mouse over the map to read a weight" : "";
  if (large) {
    clear(svgRoot);
    this.enlargedLayout = paintHeatmap(new CanvasPainter(canvas, 1, this.app.fontFamily), enlargedSpec(this, layer, head));
  } else {
    this.enlargedLayout = paintHeatmap(new SvgPainter(svgRoot, this.app.fontFamily), enlargedSpec(this, layer, head), true);
  }
};

Viewer.prototype.readCell = function (canvas, event) {
  var layout = this.enlargedLayout, state = this.state;
  if (!layout || !state.enlarged) return;
  var box = canvas.getBoundingClientRect(), scale = box.width / layout.width;
  var k = Math.floor(((event.clientX - box.left) / scale - layout.left) / layout.cell);
  var q = Math.floor(((event.clientY - box.top) / scale - layout.top) / layout.cell);
  var group = this.group();
  if (q < 0 || k < 0 || q >= layout.rows || k >= layout.cols) return;
  var weight = group.layers[state.enlarged.layer][state.enlarged.head][q][k];
  this.find("enlarged-readout").textContent = group.queries[q] + " → " + group.keys[k] + ": " + formatValue(weight);
};

// ------------------------------------------------------------------ mounting

function newViewer(app) {
  var box = app.template.content.firstElementChild.cloneNode(true);
  return new Viewer(app, box);
}

function mount(root) {
  if (root.attnlabMounted) return;
  root.attnlabMounted = true;
  root.setAttribute("data-attnlab-mounted", "");
  var dataNode = $("script[data-attnlab-data]", root);
  var data = JSON.parse((dataNode && dataNode.textContent) || "{}");
  var template = $("template[data-attnlab-template=viewer]", root);
  var app = {
    root: root, template: template,
    svgNamespace: template.content.querySelector("svg").namespaceURI,
    fontFamily: getComputedStyle(root).fontFamily || "sans-serif"
  };
  app.measure = makeMeasurer(app.fontFamily);
  var main = $("[data-slot=main]", root);
  var explorer = data.explorer || null;
  if (data.compare || (explorer && explorer.compare)) {
    app.compare = new ComparePage(app, main);
    if (data.compare) app.compare.render(data.compare);
  } else {
    app.viewer = newViewer(app);
    main.appendChild(app.viewer.box);
    if (data.doc) app.viewer.render(data.doc);
  }
  root.attnlab = app; // handy from the browser console: document.querySelector("[data-attnlab-root]").attnlab
  var form = $("[data-testid=explorer-form]", root);
  if (form && explorer) initExplorer(app, form, explorer);
}

function mountAll() { $$("[data-attnlab-root]", document).forEach(mount); }

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
