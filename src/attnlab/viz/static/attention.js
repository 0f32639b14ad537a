/*
 * attnlab attention viewer: one script for the static attention.html page and the explorer.
 *
 * Views (all drawn from an attention.json document, see DESIGN.md):
 *  - head view: query tokens (left) joined to key tokens (right) by lines whose opacity is the
 *    attention weight, one colour per head; hovering a token isolates its links.
 *  - model view: every layer x head of the selected kind as a small heatmap thumbnail; clicking
 *    one enlarges it with token labels.
 * User strings (tokens, sentences, error messages) are only ever set through textContent.
 */
(function () {
  "use strict";

  var KIND_LABELS = { encoder_self: "Encoder self", decoder_self: "Decoder self (masked)", cross: "Cross" };
  var KIND_SIDES = { // which tokens are queries (rows) and keys (columns)
    encoder_self: ["source_tokens", "source_tokens"],
    decoder_self: ["target_tokens", "target_tokens"],
    cross: ["target_tokens", "source_tokens"]
  };
  var HEAD_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                     "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  // Viridis stops, the same colour map as the PNG figures (0 = dark purple, 1 = yellow).
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var MIN_LINK_WEIGHT = 0.01; // lines lighter than this are invisible anyway; skip drawing them

  // The page carries an inline <svg>, so the browser tells us the SVG namespace: the page then
  // holds no URL at all, not even the namespace one.
  var SVG_NS = document.querySelector("svg").namespaceURI;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function headColor(head) { return HEAD_COLORS[head % HEAD_COLORS.length]; }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, String(attrs[name])); });
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function viridis(value) {
    var t = Math.min(1, Math.max(0, value)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
    return VIRIDIS[i].map(function (c, k) { return Math.round(c + f * (VIRIDIS[i + 1][k] - c)); });
  }

  function rgb(value) { return "rgb(" + viridis(value).join(",") + ")"; }

  /** Group doc.attention by kind: {kind: {layers: [weights [head][q][k]], queries, keys}}. */
  function groupByKind(doc) {
    var groups = {};
    (doc.attention || []).forEach(function (entry) {
      var sides = KIND_SIDES[entry.kind];
      if (!sides) return;
      var group = groups[entry.kind] || (groups[entry.kind] = {
        entries: [], queries: doc[sides[0]] || [], keys: doc[sides[1]] || [] });
      group.entries.push(entry);
    });
    Object.keys(groups).forEach(function (kind) {
      var group = groups[kind];
      group.entries.sort(function (a, b) { return a.layer - b.layer; });
      group.layers = group.entries.map(function (entry) { return entry.weights; });
      group.layerNumbers = group.entries.map(function (entry) { return entry.layer; });
      group.numHeads = group.layers.length ? group.layers[0].length : 0;
    });
    return groups;
  }

  /** The viewer owns the controls, head view and model view inside one page. */
  function Viewer(root) {
    this.root = root;
    this.state = null;
  }

  Viewer.prototype.render = function (doc) {
    var groups = groupByKind(doc || {});
    var kinds = Object.keys(KIND_LABELS).filter(function (kind) { return groups[kind]; });
    $("[data-testid=empty]", this.root).hidden = kinds.length > 0;
    $("[data-testid=content]", this.root).hidden = kinds.length === 0;
    if (!kinds.length) return;
    var previous = this.state;
    var kind = previous && groups[previous.kind] ? previous.kind : kinds[0];
    this.state = { doc: doc, groups: groups, kinds: kinds, kind: kind, layer: 0, hidden: {}, enlarged: null };
    this.renderSentences();
    this.selectKind(kind);
  };

  Viewer.prototype.renderSentences = function () {
    var doc = this.state.doc;
    $("[data-testid=source-text]", this.root).textContent = (doc.source_tokens || []).join(" ");
    var target = (doc.target_tokens || []).join(" ");
    $("[data-testid=target-text]", this.root).textContent = target;
    $("[data-row=target]", this.root).hidden = !target;
    var translation = typeof doc.translation === "string" ? doc.translation : "";
    $("[data-testid=translation]", this.root).textContent = translation;
    $("[data-row=translation]", this.root).hidden = !translation;
  };

  Viewer.prototype.selectKind = function (kind) {
    var state = this.state, self = this;
    state.kind = kind;
    state.layer = 0;
    state.enlarged = null;
    var switcher = $("[data-testid=kind-switch]", this.root);
    clear(switcher);
    state.kinds.forEach(function (name) {
      var button = el("button", { type: "button", "data-kind": name, "aria-pressed": name === kind },
                      KIND_LABELS[name]);
      if (name === kind) button.className = "active";
      button.addEventListener("click", function () { self.selectKind(name); });
      switcher.appendChild(button);
    });
    var group = state.groups[kind];
    var select = $("[data-testid=layer-select]", this.root);
    clear(select);
    group.layerNumbers.forEach(function (number, index) {
      select.appendChild(el("option", { value: index }, "layer " + number));
    });
    select.onchange = function () { self.selectLayer(Number(select.value)); };
    this.renderHeadChips();
    this.renderModelView();
    this.selectLayer(0);
  };

  Viewer.prototype.selectLayer = function (layer) {
    this.state.layer = layer;
    $("[data-testid=layer-select]", this.root).value = String(layer);
    this.root.querySelectorAll(".thumb").forEach(function (thumb) {
      thumb.classList.toggle("current-layer", Number(thumb.dataset.layer) === layer);
    });
    this.renderHeadView();
  };

  Viewer.prototype.renderHeadChips = function () {
    var state = this.state, self = this;
    var chips = $("[data-testid=head-chips]", this.root);
    clear(chips);
    for (var head = 0; head < state.groups[state.kind].numHeads; head++) {
      (function (head) {
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
        chip.appendChild(el("span", {}, "head " + head));
        chips.appendChild(chip);
      })(head);
    }
  };

  /** Head view: two token columns joined by one line per (head, query, key), opacity = weight. */
  Viewer.prototype.renderHeadView = function () {
    var state = this.state, group = state.groups[state.kind];
    var weights = group.layers[state.layer]; // [head][query][key]
    var root = $("[data-testid=head-view] svg", this.root);
    clear(root);
    var longest = Math.max.apply(null, group.queries.concat(group.keys).map(function (t) { return t.length; }).concat([4]));
    var rowHeight = 24, top = 34, gap = 190;
    var columnWidth = Math.min(320, 24 + 7.5 * longest); // roughly 7.5 px per character at 13 px
    var rows = Math.max(group.queries.length, group.keys.length);
    var width = 2 * columnWidth + gap, height = top + rows * rowHeight + 8;
    setAttrs(root, { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    var leftX = columnWidth, rightX = columnWidth + gap;
    root.appendChild(svg("text", { x: leftX - 8, y: 14, "text-anchor": "end", class: "column-title" },
                         state.kind === "cross" ? "target (queries)" : "queries"));
    root.appendChild(svg("text", { x: rightX + 8, y: 14, class: "column-title" },
                         state.kind === "cross" ? "source (keys)" : "keys"));
    var links = svg("g", { class: "links" });
    root.appendChild(links);
    weights.forEach(function (headWeights, head) {
      if (state.hidden[head]) return;
      headWeights.forEach(function (row, query) {
        row.forEach(function (weight, key) {
          if (weight < MIN_LINK_WEIGHT) return;
          links.appendChild(svg("line", {
            class: "link", "data-head": head, "data-q": query, "data-k": key,
            x1: leftX + 4, y1: top + query * rowHeight, x2: rightX - 4, y2: top + key * rowHeight,
            stroke: headColor(head), "stroke-width": 1 + 2.5 * weight, "stroke-opacity": weight.toFixed(3)
          }));
        });
      });
    });
    this.drawTokenColumn(root, group.queries, "query", leftX - 8, top, rowHeight, "end", columnWidth - 8);
    this.drawTokenColumn(root, group.keys, "key", rightX + 8, top, rowHeight, "start", columnWidth - 8);
  };

  Viewer.prototype.drawTokenColumn = function (root, tokens, side, x, top, rowHeight, anchor, width) {
    var self = this;
    tokens.forEach(function (token, index) {
      var y = top + index * rowHeight;
      var bg = svg("rect", { class: "token-bg", "data-side": side, "data-index": index, rx: 4,
                             x: anchor === "end" ? x - width + 4 : x - 4, y: y - rowHeight / 2 + 2,
                             width: width, height: rowHeight - 4 });
      var text = svg("text", { class: "token", "data-side": side, "data-index": index, x: x, y: y,
                               "text-anchor": anchor, "dominant-baseline": "middle" }, token);
      [bg, text].forEach(function (node) {
        node.addEventListener("mouseenter", function () { self.focusToken(side, index); });
        node.addEventListener("mouseleave", function () { self.focusToken(null, -1); });
      });
      root.appendChild(bg);
      root.appendChild(text);
    });
  };

  /** Highlight the links of one token and dim the others; side null clears the focus. */
  Viewer.prototype.focusToken = function (side, index) {
    var root = $("[data-testid=head-view] svg", this.root);
    var attribute = side === "query" ? "q" : "k";
    root.querySelectorAll(".link").forEach(function (line) {
      var mine = side !== null && Number(line.dataset[attribute]) === index;
      line.classList.toggle("highlighted", mine);
      line.classList.toggle("dimmed", side !== null && !mine);
    });
    root.querySelectorAll(".token, .token-bg").forEach(function (node) {
      node.classList.toggle("active", node.dataset.side === side && Number(node.dataset.index) === index);
    });
  };

  /** Model view: a layers x heads grid of canvas thumbnails of the current kind. */
  Viewer.prototype.renderModelView = function () {
    var state = this.state, group = state.groups[state.kind], self = this;
    var grid = $("[data-testid=model-view]", this.root);
    clear(grid);
    grid.style.gridTemplateColumns = "auto repeat(" + group.numHeads + ", auto)";
    grid.appendChild(el("span", { class: "axis" }, ""));
    for (var head = 0; head < group.numHeads; head++) {
      grid.appendChild(el("span", { class: "axis", style: "color:" + headColor(head) }, "head " + head));
    }
    group.layers.forEach(function (layerWeights, layer) {
      grid.appendChild(el("span", { class: "axis" }, "layer " + group.layerNumbers[layer]));
      layerWeights.forEach(function (matrix, head) {
        var canvas = el("canvas", { class: "thumb", "data-layer": layer, "data-head": head,
                                    title: "layer " + group.layerNumbers[layer] + ", head " + head });
        paintCanvas(canvas, matrix);
        canvas.addEventListener("click", function () { self.enlarge(layer, head); });
        grid.appendChild(canvas);
      });
    });
    $("[data-testid=enlarged]", this.root).hidden = true;
  };

  function paintCanvas(canvas, matrix) {
    var rows = matrix.length, cols = rows ? matrix[0].length : 0;
    canvas.width = Math.max(1, cols);
    canvas.height = Math.max(1, rows);
    var context = canvas.getContext("2d"), image = context.createImageData(canvas.width, canvas.height);
    matrix.forEach(function (row, q) {
      row.forEach(function (weight, k) {
        var color = viridis(weight), offset = 4 * (q * canvas.width + k);
        image.data[offset] = color[0]; image.data[offset + 1] = color[1];
        image.data[offset + 2] = color[2]; image.data[offset + 3] = 255;
      });
    });
    context.putImageData(image, 0, 0);
  }

  /** Enlarged heatmap of one (layer, head) with token labels and a tooltip per cell. */
  Viewer.prototype.enlarge = function (layer, head) {
    var state = this.state, group = state.groups[state.kind], self = this;
    state.enlarged = { layer: layer, head: head };
    this.root.querySelectorAll(".thumb").forEach(function (thumb) {
      thumb.classList.toggle("selected", Number(thumb.dataset.layer) === layer && Number(thumb.dataset.head) === head);
    });
    if (state.layer !== layer) this.selectLayer(layer);
    var panel = $("[data-testid=enlarged]", this.root);
    panel.hidden = false;
    $("[data-testid=enlarged-title]", panel).textContent =
      KIND_LABELS[state.kind] + " · layer " + group.layerNumbers[layer] + " · head " + head;
    $("[data-testid=enlarged-close]", panel).onclick = function () {
      panel.hidden = true;
      self.root.querySelectorAll(".thumb.selected").forEach(function (t) { t.classList.remove("selected"); });
    };
    var root = $("svg", panel), matrix = group.layers[layer][head];
    clear(root);
    var longest = function (tokens) {
      return tokens.reduce(function (m, t) { return Math.max(m, t.length); }, 1);
    };
    var cell = Math.max(12, Math.min(34, Math.floor(440 / Math.max(group.keys.length, 1))));
    var left = Math.min(160, 12 + 7 * longest(group.queries)), top = Math.min(160, 12 + 7 * longest(group.keys));
    var width = left + cell * group.keys.length + 4, height = top + cell * group.queries.length + 4;
    setAttrs(root, { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    group.keys.forEach(function (token, k) {
      var x = left + (k + 0.5) * cell;
      root.appendChild(svg("text", { x: x, y: top - 6, transform: "rotate(-60 " + x + " " + (top - 6) + ")" }, token));
    });
    matrix.forEach(function (row, q) {
      root.appendChild(svg("text", { x: left - 6, y: top + (q + 0.5) * cell, "text-anchor": "end",
                                     "dominant-baseline": "middle" }, group.queries[q]));
      row.forEach(function (weight, k) {
        var rect = svg("rect", { class: "cell", x: left + k * cell, y: top + q * cell, width: cell, height: cell,
                                 fill: rgb(weight) });
        rect.appendChild(svg("title", {}, group.queries[q] + " → " + group.keys[k] + ": " + weight.toFixed(3)));
        root.appendChild(rect);
      });
    });
  };

  /** Explorer: send the form to the API and redraw the same views with the answer. */
  function initExplorer(form, viewer, config) {
    var status = $("[data-testid=status]", form), button = $("[data-testid=submit]", form);
    var beam = $("[data-testid=beam-select]", form);
    for (var k = 1; k <= (config.max_beam || 1); k++) beam.appendChild(el("option", { value: k }, String(k)));
    var text = $("[data-testid=text-input]", form);
    if (config.max_chars) text.maxLength = config.max_chars;
    var examples = $("[data-testid=examples]", form);
    (config.examples || []).forEach(function (example) {
      var chip = el("button", { type: "button" }, example);
      chip.addEventListener("click", function () { text.value = example; form.requestSubmit(); });
      examples.appendChild(chip);
    });
    function report(message, isError) {
      status.textContent = message;
      status.classList.toggle("error", !!isError);
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var target = $("[data-testid=target-input]", form).value;
      var body = { text: text.value, target: target.trim() ? target : null, beam: Number(beam.value || 1) };
      button.disabled = true;
      report("Computing attention…", false);
      fetch(config.api, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (payload) {
            if (!response.ok) throw new Error(describeError(response.status, payload));
            return payload;
          });
        })
        .then(function (doc) {
          viewer.render(doc);
          report((doc.source_tokens || []).length + " source tokens, " +
                 (doc.target_tokens || []).length + " target tokens", false);
        })
        .catch(function (error) { report(error.message, true); })
        .finally(function () { button.disabled = false; });
    });
  }

  function describeError(status, payload) {
    var detail = payload && payload.detail;
    if (Array.isArray(detail)) detail = detail.map(function (d) { return d.msg || String(d); }).join("; ");
    return "Error " + status + ": " + (detail || "request failed");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var data = JSON.parse($("#attnlab-data").textContent);
    var viewer = new Viewer($("[data-testid=attention-app]"));
    window.attnlabViewer = viewer; // handy from the browser console
    if (data.doc) viewer.render(data.doc);
    var form = $("[data-testid=explorer-form]");
    if (form && data.explorer) initExplorer(form, viewer, data.explorer);
  });
})();
