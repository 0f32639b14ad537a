/*
 * attnlab page, part 3 of 4 — the panels around the views:
 *  - decoding step by step (doc.decoding): a step control; step t highlights row t of cross and
 *    decoder_self (what step t computed), lists the model's top-k next tokens and, with beam
 *    search, every hypothesis alive at step t with its score and the winner's prefix;
 *  - the compare page (payload "compare"): two viewers side by side and the difference map
 *    head-mean(B) - head-mean(A) per kind and layer, diverging colours with zero white;
 *  - the explorer form, and its head ablation (explorer config "ablate").
 */

// ------------------------------------------------------------------ decoding, step by step

function decodingSteps(viewer) {
  var decoding = viewer.state && viewer.state.doc.decoding;
  return decoding && Array.isArray(decoding.steps) ? decoding.steps : [];
}

function wireSteps(viewer) {
  var slider = viewer.find("step-slider");
  function go(step) { setStep(viewer, step); }
  slider.addEventListener("input", function () { go(Number(slider.value)); });
  viewer.find("step-prev").addEventListener("click", function () {
    var step = viewer.state.step;
    go(step === null ? decodingSteps(viewer).length - 1 : Math.max(0, step - 1));
  });
  viewer.find("step-next").addEventListener("click", function () {
    var step = viewer.state.step;
    go(step === null ? 0 : Math.min(decodingSteps(viewer).length - 1, step + 1));
  });
  viewer.find("step-all").addEventListener("click", function () { go(null); });
}

function renderSteps(viewer) {
  var steps = decodingSteps(viewer), panel = viewer.find("steps");
  panel.hidden = !steps.length;
  if (!steps.length) return;
  var decoding = viewer.state.doc.decoding;
  viewer.find("step-slider").max = String(steps.length - 1);
  viewer.find("step-strategy").textContent = decoding.strategy === "beam" ?
    "beam search, " + decoding.beam_size + " beams" : decoding.strategy === "forced" ? "target given (teacher-forced)" :
    "greedy decoding";
}

/** Follow step t (null: all steps); the views show row t of cross and decoder self-attention. */
function setStep(viewer, step) {
  var state = viewer.state;
  state.step = step;
  if (step !== null && state.kind === "encoder_self") { // the step's rows live in cross / decoder_self
    var kind = state.groups.cross ? "cross" : state.groups.decoder_self ? "decoder_self" : null;
    if (kind) { viewer.selectKind(kind); return; }
  }
  viewer.repaintForStep();
  updateStepPanel(viewer);
}

function updateStepPanel(viewer) {
  var steps = decodingSteps(viewer);
  if (!steps.length) return;
  var state = viewer.state, step = state.step, panel = viewer.find("steps");
  panel.dataset.step = step === null ? "" : String(step);
  viewer.find("step-slider").value = String(step === null ? 0 : step);
  viewer.find("step-all").classList.toggle("active", step === null);
  var label = viewer.find("step-label"), body = viewer.find("step-body");
  body.hidden = step === null;
  if (step === null) { label.textContent = "all steps — move the slider to follow the decoding"; return; }
  var info = steps[step], reads = (state.doc.target_tokens || [])[step];
  label.textContent = "step " + (step + 1) + " of " + steps.length + " · reads “" + (reads === undefined ? "?" : reads) +
    "” → emits “" + info.token + "”";
  renderTopK(viewer.find("step-topk"), info);
  renderStepRow(viewer, step);
  renderHypotheses(viewer, steps, step);
}

function barItem(label, value, fraction, attrs) {
  var item = el("li", attrs);
  item.appendChild(el("span", { class: "bar-label" }, label));
  var bar = el("span", { class: "bar" });
  bar.appendChild(el("span", { class: "bar-fill", style: "width:" + (100 * clamp(fraction, 0, 1)).toFixed(1) + "%" }));
  item.appendChild(bar);
  item.appendChild(el("span", { class: "bar-value" }, formatValue(value)));
  return item;
}

function renderTopK(list, info) {
  clear(list);
  (info.top_k || []).forEach(function (entry) {
    list.appendChild(barItem(entry.token, entry.prob, entry.prob, { class: entry.token === info.token ? "chosen" : null,
                                                                    "data-token": entry.token, "data-prob": entry.prob }));
  });
}

/** The source tokens step t attended to most: cross-attention row t, head mean, of one layer. */
function renderStepRow(viewer, step) {
  var list = viewer.find("step-row"), state = viewer.state;
  clear(list);
  var cross = matricesFor(state.doc, "attention").cross;
  if (!cross || step >= cross.queries.length) { viewer.find("step-row-title").textContent = ""; return; }
  var layer = state.kind === "cross" && state.method === "attention" ? state.layer : cross.layers.length - 1;
  var heads = cross.layers[layer], row = cross.keys.map(function (_, k) {
    var sum = 0;
    heads.forEach(function (matrix) { sum += matrix[step][k]; });
    return { key: k, weight: sum / heads.length };
  });
  viewer.find("step-row-title").textContent = "Cross-attention row " + step + ", " + cross.layerLabels[layer] + ", head mean";
  list.dataset.layer = String(cross.layerNumbers[layer]);
  row.slice().sort(function (a, b) { return b.weight - a.weight; }).slice(0, 6).forEach(function (entry) {
    list.appendChild(barItem(cross.keys[entry.key], entry.weight, entry.weight,
                             { "data-key": entry.key, "data-weight": entry.weight }));
  });
}

function renderHypotheses(viewer, steps, step) {
  var decoding = viewer.state.doc.decoding, box = viewer.find("step-beam");
  var hypotheses = steps[step].hypotheses;
  box.hidden = decoding.strategy !== "beam" || !Array.isArray(hypotheses);
  if (box.hidden) return;
  var table = viewer.find("step-hypotheses"), last = step === steps.length - 1;
  clear(table);
  var head = el("tr");
  ["#", "hypothesis", "log p", "final score", ""].forEach(function (name) { head.appendChild(el("th", {}, name)); });
  table.appendChild(head);
  hypotheses.forEach(function (hypothesis, index) {
    var winner = last && index === decoding.winner;
    var row = el("tr", { class: [hypothesis.winner_prefix ? "winner-prefix" : "", hypothesis.finished ? "finished" : "",
                                 winner ? "winner" : ""].join(" ").trim() || null, "data-index": index });
    row.appendChild(el("td", {}, String(index + 1)));
    row.appendChild(el("td", { class: "hypothesis" }, (hypothesis.tokens || []).join(" ")));
    row.appendChild(el("td", {}, Number(hypothesis.score).toFixed(3)));
    row.appendChild(el("td", {}, typeof hypothesis.final_score === "number" ? hypothesis.final_score.toFixed(3) : ""));
    row.appendChild(el("td", { class: "flag" }, winner ? "★ winner" : hypothesis.winner_prefix ? "winner's prefix" :
                                                hypothesis.finished ? "finished" : ""));
    table.appendChild(row);
  });
}

// ------------------------------------------------------------------ the compare page

function ComparePage(app, main) {
  var self = this;
  this.app = app;
  this.box = el("section", { class: "compare", "data-testid": "compare" });
  this.header = el("div", { class: "sentences compare-head", "data-testid": "compare-head" });
  var controls = el("nav", { class: "controls" });
  this.kinds = el("div", { class: "kinds", "data-testid": "compare-kind", role: "group", "aria-label": "difference kind" });
  var layerLabel = el("label", { class: "field inline" }, "Layer ");
  this.layerSelect = el("select", { "data-testid": "compare-layer" });
  this.layerSelect.addEventListener("change", function () { self.selectLayer(Number(self.layerSelect.value)); });
  layerLabel.appendChild(this.layerSelect);
  controls.appendChild(this.kinds);
  controls.appendChild(layerLabel);
  this.panel = el("section", { class: "panel difference", "data-testid": "difference-view" });
  var bar = el("div", { class: "panel-bar" });
  this.title = el("h2", {}, "Difference");
  bar.appendChild(this.title);
  bar.appendChild(downloadButtons(app, function (painter) { paintHeatmap(painter, self.spec(), false); },
                                  function () { return safeName("difference-" + self.kind + "-layer-" + self.layerNumber()); }));
  this.panel.appendChild(bar);
  this.hint = el("p", { class: "hint" });
  this.legend = el("div", { class: "legend", "aria-hidden": "true", "data-testid": "difference-legend" });
  this.readout = el("p", { class: "readout", "data-testid": "difference-max" });
  this.svg = document.createElementNS(app.svgNamespace, "svg");
  setAttrs(this.svg, { class: "heatmap-svg", role: "img", "aria-label": "difference map" });
  this.canvas = el("canvas", { class: "heatmap-canvas", hidden: "" });
  [this.hint, this.legend, this.svg, this.canvas, this.readout].forEach(function (node) { self.panel.appendChild(node); });
  var sides = el("div", { class: "compare-sides" });
  this.viewers = ["a", "b"].map(function (name) {
    var side = el("section", { class: "compare-side", "data-testid": "compare-" + name });
    side.appendChild(el("h2", { class: "side-label", "data-testid": "compare-label" }));
    var viewer = newViewer(app);
    side.appendChild(viewer.box);
    sides.appendChild(side);
    viewer.side = side;
    return viewer;
  });
  [this.header, controls, this.panel, sides].forEach(function (node) { self.box.appendChild(node); });
  main.appendChild(this.box);
}

ComparePage.prototype.render = function (payload) {
  var self = this;
  this.payload = payload;
  var labels = payload.labels || ["A", "B"];
  clear(this.header);
  var rows = [["runs", "A: " + labels[0] + "   B: " + labels[1]], ["level", payload.level === "word" ?
    "word level — " + (payload.merge || "") : "token level"]];
  if (payload.note) rows.push(["note", payload.note]);
  (payload.translations || []).forEach(function (text, i) { if (text) rows.push([i ? "B output" : "A output", text]); });
  rows.forEach(function (pair) {
    var row = el("div", { class: "sentence-row" });
    row.appendChild(el("span", { class: "label" }, pair[0]));
    row.appendChild(el("span", { class: "text", "data-testid": "compare-" + pair[0].replace(/ /g, "-") }, pair[1]));
    self.header.appendChild(row);
  });
  this.viewers.forEach(function (viewer, i) {
    $("[data-testid=compare-label]", viewer.side).textContent = (i ? "B · " : "A · ") + labels[i];
    viewer.render((payload.docs || [])[i]);
  });
  this.byKind = {};
  (payload.differences || []).forEach(function (entry) {
    (self.byKind[entry.kind] || (self.byKind[entry.kind] = [])).push(entry);
  });
  Object.keys(this.byKind).forEach(function (kind) { self.byKind[kind].sort(function (a, b) { return a.layer - b.layer; }); });
  var kinds = KIND_ORDER.filter(function (kind) { return self.byKind[kind]; });
  clear(this.kinds);
  kinds.forEach(function (kind) {
    var button = el("button", { type: "button", "data-kind": kind }, KIND_LABELS[kind]);
    button.addEventListener("click", function () { self.selectKind(kind); });
    self.kinds.appendChild(button);
  });
  this.panel.hidden = !kinds.length;
  if (kinds.length) this.selectKind(kinds.indexOf(this.kind) >= 0 ? this.kind : kinds[0]);
};

ComparePage.prototype.selectKind = function (kind) {
  var self = this;
  this.kind = kind;
  $$("button", this.kinds).forEach(function (button) {
    button.classList.toggle("active", button.dataset.kind === kind);
    button.setAttribute("aria-pressed", String(button.dataset.kind === kind));
  });
  clear(this.layerSelect);
  this.byKind[kind].forEach(function (entry, index) {
    self.layerSelect.appendChild(el("option", { value: index }, "layer " + entry.layer));
  });
  this.selectLayer(0);
};

ComparePage.prototype.layerNumber = function () { return this.byKind[this.kind][this.layerIndex].layer; };

ComparePage.prototype.spec = function () {
  var entry = this.byKind[this.kind][this.layerIndex], tokens = this.payload.tokens || {};
  var sides = KIND_SIDES[this.kind].map(function (field) { return tokens[field.replace("_tokens", "")] || []; });
  var maxAbs = 0;
  entry.matrix.forEach(function (row) { row.forEach(function (v) { maxAbs = Math.max(maxAbs, Math.abs(v)); }); });
  return { queries: sides[0], keys: sides[1], matrix: entry.matrix, scale: makeScale(true, maxAbs, false),
           row: null, measure: this.app.measure, maxAbs: maxAbs };
};

ComparePage.prototype.selectLayer = function (index) {
  this.layerIndex = index;
  this.layerSelect.value = String(index);
  var spec = this.spec(), layer = this.layerNumber(), labels = this.payload.labels || ["A", "B"];
  this.title.textContent = "Difference B − A · " + KIND_LABELS[this.kind] + " · layer " + layer;
  this.hint.textContent = "head-mean attention of " + labels[1] + " minus that of " + labels[0] +
    ": red where B attends more, blue where A does, white where they agree.";
  renderLegend(this.legend, spec.scale, false);
  this.readout.textContent = "largest |difference|: " + formatValue(spec.maxAbs);
  this.panel.dataset.maxAbs = String(spec.maxAbs);
  var large = Math.max(spec.queries.length, spec.keys.length) > LARGE_TOKENS;
  setHidden(this.svg, large);
  this.canvas.hidden = !large;
  if (large) { clear(this.svg); paintHeatmap(new CanvasPainter(this.canvas, 1, this.app.fontFamily), spec, false); }
  else paintHeatmap(new SvgPainter(this.svg, this.app.fontFamily), spec, true);
  var kind = this.kind;
  this.viewers.forEach(function (viewer) { viewer.show(kind, layer); });
};

// ------------------------------------------------------------------ the explorer

/** Explorer: send the form to the API and redraw the same views with the answer. */
function initExplorer(app, form, config) {
  var status = $("[data-testid=status]", form), button = $("[data-testid=submit]", form);
  var beam = $("[data-testid=beam-select]", form), text = $("[data-testid=text-input]", form);
  for (var k = 1; k <= (config.max_beam || 1); k++) beam.appendChild(el("option", { value: k }, String(k)));
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
  var ablation = config.ablate && app.viewer ? initAblation(app, form, config) : null;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var target = $("[data-testid=target-input]", form).value;
    var body = { text: text.value, target: target.trim() ? target : null, beam: Number(beam.value || 1) };
    button.disabled = true;
    report(config.compare ? "Comparing…" : "Computing attention…", false);
    postJson(config.api, body)
      .then(function (payload) {
        if (config.compare) {
          app.compare.render(payload);
          report("compared " + (payload.labels || []).join(" and "), false);
          return;
        }
        if (ablation) ablation.start(body, payload);
        app.viewer.render(payload);
        report((payload.source_tokens || []).length + " source tokens, " +
               (payload.target_tokens || []).length + " target tokens", false);
      })
      .catch(function (error) { report(error.message, true); })
      .finally(function () { button.disabled = false; });
  });
}

function postJson(url, body) {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
    .then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (payload) {
        if (!response.ok) throw new Error(describeError(response.status, payload));
        return payload;
      });
    });
}

function describeError(status, payload) {
  var detail = payload && payload.detail;
  if (Array.isArray(detail)) detail = detail.map(function (d) { return d.msg || String(d); }).join("; ");
  return "Error " + status + ": " + (detail || "request failed");
}

/**
 * Head ablation in the explorer: with "ablate" on, a click on a thumbnail toggles that head and
 * re-posts {text, target, beam, heads} to config.ablate at once; the answer (a document plus
 * "translation" and "logprob_change") redraws the views. Reset posts "heads": [].
 */
function initAblation(app, form, config) {
  var viewer = app.viewer;
  var panel = el("section", { class: "ablation", "data-testid": "ablation", hidden: "" });
  var modeLabel = el("label", { class: "field inline" });
  var mode = el("input", { type: "checkbox", "data-testid": "ablate-mode" });
  modeLabel.appendChild(mode);
  modeLabel.appendChild(document.createTextNode(" click a head in the model view to ablate it"));
  var reset = el("button", { type: "button", class: "reset", "data-testid": "ablate-reset" }, "Reset (restore every head)");
  var heads = el("p", { class: "muted", "data-testid": "ablated-heads" });
  var result = el("p", { class: "ablation-result", "data-testid": "ablation-result" });
  [modeLabel, reset, heads, result].forEach(function (node) { panel.appendChild(node); });
  form.parentNode.insertBefore(panel, form.nextSibling);
  var request = null, baseline = "", sequence = 0;

  function describe() {
    var keys = Object.keys(viewer.ablated);
    heads.textContent = keys.length ? "ablated: " + keys.map(function (key) {
      var parts = key.split("|");
      return parts[0] + " layer " + parts[1] + " head " + parts[2];
    }).join(", ") : "no head ablated";
    panel.classList.toggle("active", keys.length > 0);
  }
  function send() {
    var chosen = Object.keys(viewer.ablated).map(function (key) {
      var parts = key.split("|");
      return { kind: parts[0], layer: Number(parts[1]), head: Number(parts[2]) };
    });
    var mine = ++sequence;
    describe();
    result.textContent = "re-translating…";
    result.classList.remove("error");
    return postJson(config.ablate, Object.assign({}, request, { heads: chosen })).then(function (payload) {
      if (mine !== sequence) return; // a later click answered first
      viewer.render(payload);
      var change = Number(payload.logprob_change);
      clear(result);
      result.appendChild(el("span", {}, "translation: "));
      result.appendChild(el("strong", { "data-testid": "ablated-translation" }, payload.translation || ""));
      result.appendChild(el("span", {}, "  (with every head: " + baseline + ")  · Δ log p(reference) = "));
      result.appendChild(el("strong", { "data-testid": "logprob-change" },
                            isFinite(change) ? (change > 0 ? "+" : "") + change.toFixed(3) : "n/a"));
    }).catch(function (error) {
      if (mine !== sequence) return;
      result.textContent = error.message;
      result.classList.add("error");
    });
  }
  viewer.onThumbClick = function (layer, head) {
    if (!mode.checked || viewer.state.method !== "attention") { viewer.enlarge(layer, head); return; }
    var key = viewer.state.kind + "|" + viewer.group().layerNumbers[layer] + "|" + head;
    if (viewer.ablated[key]) delete viewer.ablated[key]; else viewer.ablated[key] = true;
    send();
  };
  reset.addEventListener("click", function () { viewer.ablated = {}; send(); });
  return {
    start: function (body, payload) { // a new sentence: every head back, this is the baseline
      request = body;
      baseline = payload.translation || "";
      viewer.ablated = {};
      panel.hidden = false;
      describe();
      result.textContent = "";
    }
  };
}
