// spade-lens latent browser: a static page, no server, no network, no build step.
// Data arrives through SPADE_LENS.receive(key, data) from script files in data/ (index first, blocks on demand).
"use strict";

const SPADE_LENS = (() => {
  const pending = {};
  const received = {};
  const PAGE = 500;
  let index = null;
  let rows = [];
  let sortKey = "f1";
  let sortDir = -1;
  let shown = PAGE;

  // ---- loading -------------------------------------------------------------------------------------------
  function receive(key, data) {
    received[key] = data;
    if (pending[key]) { pending[key].resolve(data); delete pending[key]; }
    if (key === "index") { start(data); }
  }

  function load(key, src) {
    if (received[key]) return Promise.resolve(received[key]);
    if (!pending[key]) {
      let resolve, reject;
      const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
      pending[key] = { promise, resolve, reject };
      const tag = document.createElement("script");
      tag.src = src;
      tag.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(tag);
    }
    return pending[key].promise;
  }

  // ---- formatting (the tests format the probe's numbers the same way) ------------------------------------
  const fixed = (v, d) => (v === null || v === undefined ? "n/a" : v.toFixed(d));
  const pct = (v, d) => (v === null || v === undefined ? "n/a" : (100 * v).toFixed(d) + "%");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  const conceptName = (c) => (c >= 0 ? index.concepts[c] : "");
  const labelName = (l) => (l >= 0 && l < index.label_names.length ? index.label_names[l] : l >= 0 ? String(l) : "no label");
  const latentHash = (sae, i) => "#sae=" + encodeURIComponent(sae) + "&latent=" + i;

  // ---- index view ----------------------------------------------------------------------------------------
  function start(data) {
    index = data;
    document.title = data.title;
    document.getElementById("title").textContent = data.title;
    document.getElementById("summary").textContent =
      `${data.saes.length} SAE(s) on ${data.n_tokens.toLocaleString("en")} tokens of split "${data.split}" ` +
      `(${data.n_labelled.toLocaleString("en")} labelled, label "${data.label}"); ` +
      `top ${data.top_k} examples per latent, ${data.window} tokens of context on each side.`;
    headline();
    figures();
    rows = [];
    for (const s of data.saes) {
      const L = s.latents;
      for (let i = 0; i < s.width; i++) {
        rows.push({
          sae: s.name, latent: i, conceptId: L.concept[i], concept: conceptName(L.concept[i]),
          f1: L.f1[i], precision: L.precision[i], recall: L.recall[i], firing_rate: L.firing_rate[i],
          max_act: L.max_act[i], firings: L.firings[i], tokens: L.top_tokens[i],
          text: `${s.name} ${i} ${conceptName(L.concept[i])} ${L.top_tokens[i]}`.toLowerCase(),
        });
      }
    }
    const saeSel = document.getElementById("filter-sae");
    saeSel.append(el("option", { value: "", text: "all SAEs" }));
    for (const s of data.saes) saeSel.append(el("option", { value: s.name, text: s.name }));
    const cSel = document.getElementById("filter-concept");
    cSel.append(el("option", { value: "", text: "all concepts" }));
    data.concepts.forEach((c, j) => cSel.append(el("option", { value: String(j), text: c })));
    cSel.append(el("option", { value: "none", text: "(no concept)" }));
    cSel.append(el("option", { value: "dead", text: "(dead)" }));
    for (const id of ["filter-sae", "filter-concept", "search"]) {
      for (const kind of ["input", "change"]) {
        document.getElementById(id).addEventListener(kind, () => { shown = PAGE; renderTable(); });
      }
    }
    document.querySelectorAll("#latents th[data-key]").forEach((th) => th.addEventListener("click", () => {
      const key = th.dataset.key;
      sortDir = key === sortKey ? -sortDir : (["sae", "latent", "concept"].includes(key) ? 1 : -1);
      sortKey = key;
      renderTable();
    }));
    document.getElementById("more").addEventListener("click", () => { shown += PAGE; renderTable(); });
    window.addEventListener("hashchange", route);
    renderTable();
    performance.mark("spade-lens-index-ready");
    route();
  }

  function headline() {
    const head = el("tr", {}, el("th", { class: "text", text: "SAE" }), el("th", { text: "architecture" }),
      el("th", { text: "L0" }), el("th", { text: "NMSE" }), el("th", { text: "dead" }));
    for (const c of index.concepts) head.append(el("th", { text: c }));
    const body = el("tbody");
    for (const s of index.saes) {
      const tr = el("tr", { "data-sae": s.name }, el("td", { class: "text", text: s.name }),
        el("td", { text: s.architecture }), el("td", { class: "l0", text: fixed(s.l0, 2) }),
        el("td", { class: "nmse", text: fixed(s.nmse, 3) }),
        el("td", { class: "dead", text: `${s.dead} (${pct(s.dead_fraction, 1)})` }));
      index.concepts.forEach((c, j) => {
        const best = s.best_latent[j];
        const cell = el("td", { class: "best", "data-concept": c });
        if (best >= 0) {
          cell.append(el("a", { href: latentHash(s.name, best), title: `${s.name} latent ${best}`,
            text: fixed(s.best_f1[j], 3) }));
        } else cell.textContent = "n/a";
        tr.append(cell);
      });
      body.append(tr);
    }
    document.getElementById("headline").append(el("table", { id: "headline-table" }, el("thead", {}, head), body));
  }

  function figures() {
    const box = document.getElementById("figures");
    if (!index.figures.length) { box.parentElement.hidden = true; return; }
    document.getElementById("figure-count").textContent = `Figures of the report (${index.figures.length})`;
    for (const f of index.figures) {
      box.append(el("a", { href: f.href, title: f.name }, el("img", { src: f.href, alt: f.name, loading: "lazy" }),
        f.name));
    }
  }

  function filtered() {
    const sae = document.getElementById("filter-sae").value;
    const concept = document.getElementById("filter-concept").value;
    const query = document.getElementById("search").value.trim().toLowerCase();
    const number = /^#?\d+$/.test(query) ? Number(query.replace("#", "")) : null;
    return rows.filter((r) => {
      if (sae && r.sae !== sae) return false;
      if (concept === "dead") { if (r.firings !== 0) return false; }
      else if (concept === "none") { if (r.conceptId !== -1) return false; }
      else if (concept && r.conceptId !== Number(concept)) return false;
      if (number !== null) return r.latent === number;
      return !query || r.text.includes(query);
    });
  }

  function compare(a, b) {
    let x = a[sortKey], y = b[sortKey];
    if (x === null) x = -Infinity;
    if (y === null) y = -Infinity;
    if (x < y) return -sortDir;
    if (x > y) return sortDir;
    return a.sae === b.sae ? a.latent - b.latent : (a.sae < b.sae ? -1 : 1);
  }

  function renderTable() {
    const list = filtered().sort(compare);
    const body = document.querySelector("#latents tbody");
    body.replaceChildren();
    for (const r of list.slice(0, shown)) {
      const tr = el("tr", { class: r.firings === 0 ? "dead" : "", "data-sae": r.sae, "data-latent": String(r.latent),
        onclick: () => { location.hash = latentHash(r.sae, r.latent); } },
      el("td", { class: "text", text: r.sae }), el("td", { text: String(r.latent) }),
      el("td", { class: "text", text: r.firings === 0 ? "dead" : r.concept }),
      el("td", { class: "f1", text: fixed(r.f1, 3) }), el("td", { text: fixed(r.precision, 3) }),
      el("td", { text: fixed(r.recall, 3) }), el("td", { class: "rate", text: pct(r.firing_rate, 2) }),
      el("td", { class: "max", text: fixed(r.max_act, 3) }), el("td", { class: "tokens", text: r.tokens }));
      body.append(tr);
    }
    document.querySelectorAll("#latents th[data-key]").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && sortDir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDir === -1);
    });
    document.getElementById("row-count").textContent =
      `${Math.min(shown, list.length)} of ${list.length} latents shown`;
    document.getElementById("more").hidden = list.length <= shown;
  }

  // ---- latent view ---------------------------------------------------------------------------------------
  function route() {
    const params = new URLSearchParams(location.hash.slice(1));
    const sae = index.saes.find((s) => s.name === params.get("sae"));
    const latent = Number(params.get("latent"));
    const view = document.getElementById("latent-view");
    const indexView = document.getElementById("index-view");
    if (!sae || !Number.isInteger(latent) || latent < 0 || latent >= sae.width) {
      view.hidden = true;
      indexView.hidden = false;
      return;
    }
    indexView.hidden = true;
    view.hidden = false;
    view.replaceChildren(el("p", { text: "Loading latent…" }));
    const block = Math.floor(latent / sae.block_size);
    const src = `data/${sae.folder}/block-${String(block).padStart(4, "0")}.js`;
    load(`${sae.name}:${block}`, src).then((data) => {
      renderLatent(view, sae, data.latents[latent - data.start], data.tokens);
    }).catch((err) => view.replaceChildren(el("p", { class: "error", text: String(err) })));
  }

  function renderLatent(view, sae, d, tokens) {
    const dead = d.firings === 0;
    const named = sae.name === sae.architecture ? sae.name : `${sae.name} (${sae.architecture})`;
    const title = el("h2", { id: "latent-title", text: `${named} · latent ${d.index}` });
    if (dead) title.append(el("span", { class: "badge dead", text: "dead: never fires on these tokens" }));
    else if (d.concept >= 0) title.append(el("span", { class: "badge", text: `best concept ${conceptName(d.concept)}` }));
    const nav = el("div", { class: "nav" }, el("a", { href: "#", id: "back", text: "← all latents" }),
      el("button", { onclick: () => { location.hash = latentHash(sae.name, d.index - 1); }, text: "◀ previous" }),
      el("button", { onclick: () => { location.hash = latentHash(sae.name, d.index + 1); }, text: "next ▶" }));
    nav.children[1].disabled = d.index === 0;
    nav.children[2].disabled = d.index + 1 >= sae.width;
    const c = d.concept;
    const stats = el("table", { id: "latent-stats" },
      statRow("firings", "firings", `${d.firings.toLocaleString("en")} of ${index.n_tokens.toLocaleString("en")} tokens`),
      statRow("firing rate", "rate", pct(d.firing_rate, 2)),
      statRow("max activation", "max", fixed(d.max_act, 3)),
      statRow("best concept", "concept", c >= 0 ? conceptName(c) : "none"),
      statRow("F1", "f1", c >= 0 ? fixed(d.f1[c], 3) : "n/a"),
      statRow("precision", "precision", c >= 0 ? fixed(d.precision[c], 3) : "n/a"),
      statRow("recall", "recall", c >= 0 ? fixed(d.recall[c], 3) : "n/a"));
    const panels = el("div", { class: "panels" },
      el("div", { class: "panel" }, el("h3", { text: "Statistics" }), stats),
      el("div", { class: "panel" }, el("h3", { text: "Label distribution and concept scores" }), conceptTable(d)),
      el("div", { class: "panel" }, el("h3", { text: "Nonzero activations" }), histogram(d.histogram)));
    const more = el("div", { class: "panels" });
    if (d.distances) more.append(el("div", { class: "panel" }, el("h3", { text: "Prototype distance (normalised space)" }), distances(d.distances)));
    if (d.logits) more.append(el("div", { class: "panel" }, el("h3", { text: "Logit lens of the decoder row" }), logitLens(d.logits, tokens)));
    const examples = el("div", { class: "examples", id: "examples" });
    if (!d.examples.length) examples.append(el("p", { text: "No examples: this latent never fired." }));
    for (const ex of d.examples) examples.append(example(ex, d.max_act, tokens));
    view.replaceChildren(nav, title, panels,
      el("h3", { text: `Top ${d.examples.length || ""} activating tokens (shaded by activation; hover a token for its gold label)`.replace("  ", " ") }),
      examples, more);
    window.scrollTo(0, 0);
    performance.mark("spade-lens-latent-ready");
  }

  function statRow(name, key, value) {
    return el("tr", { "data-key": key }, el("th", { class: "text", text: name }), el("td", { text: value }));
  }

  function conceptTable(d) {
    const head = el("tr", {}, ...["concept", "firings on it", "share", "", "precision", "recall", "F1"].map(
      (t) => el("th", { class: t === "concept" ? "text" : "", text: t })));
    const body = el("tbody");
    index.concepts.forEach((name, c) => {
      const share = d.labelled_firings ? d.tp[c] / d.labelled_firings : 0;
      body.append(el("tr", { "data-concept": name, class: c === d.concept ? "best" : "" },
        el("td", { class: "text", text: name }), el("td", { class: "tp", text: String(d.tp[c]) }),
        el("td", { class: "share", text: pct(d.precision[c], 1) }),
        el("td", { class: "text" }, el("span", { class: "bar", style: `width:${Math.round(80 * share)}px` })),
        el("td", { class: "precision", text: fixed(d.precision[c], 3) }),
        el("td", { class: "recall", text: fixed(d.recall[c], 3) }), el("td", { class: "f1", text: fixed(d.f1[c], 3) })));
    });
    const unlabelled = d.firings - d.labelled_firings;
    body.append(el("tr", {}, el("td", { class: "text", text: "no label" }), el("td", { text: String(unlabelled) }),
      el("td", { text: "" }), el("td", {}), el("td", {}), el("td", {}), el("td", {})));
    return el("table", { id: "concept-table" }, el("thead", {}, head), body);
  }

  function histogram(h) {
    if (!h) return el("p", { text: "never fires" });
    const W = 300, H = 110, n = h.counts.length, top = Math.max(...h.counts);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "hist");
    svg.setAttribute("width", W);
    svg.setAttribute("height", H + 16);
    h.counts.forEach((count, j) => {
      const r = document.createElementNS(svg.namespaceURI, "rect");
      const bh = top ? Math.max(count ? 1 : 0, (H * count) / top) : 0;
      r.setAttribute("x", (j * W) / n);
      r.setAttribute("width", Math.max(1, W / n - 1));
      r.setAttribute("y", H - bh);
      r.setAttribute("height", bh);
      const tip = document.createElementNS(svg.namespaceURI, "title");
      tip.textContent = `[${(j * h.width).toPrecision(3)}, ${((j + 1) * h.width).toPrecision(3)}): ${count}`;
      r.append(tip);
      svg.append(r);
    });
    for (const [x, anchor, label] of [[0, "start", "0"], [W, "end", (n * h.width).toPrecision(3)]]) {
      const t = document.createElementNS(svg.namespaceURI, "text");
      t.setAttribute("x", x);
      t.setAttribute("y", H + 12);
      t.setAttribute("text-anchor", anchor);
      t.textContent = label;
      svg.append(t);
    }
    return el("div", {}, svg, el("div", { class: "note", text: `${n} bins of width ${h.width.toPrecision(3)}; tallest ${top}` }));
  }

  function distances(s) {
    return el("table", { id: "distance-table" },
      statRow("mean ± std (firing)", "mean", s.mean === null ? "n/a" : `${fixed(s.mean, 3)} ± ${fixed(s.std, 3)}`),
      statRow("min (firing)", "min", fixed(s.min, 3)), statRow("max (firing)", "max", fixed(s.max, 3)),
      statRow("mean over all tokens", "mean_all", fixed(s.mean_all, 3)));
  }

  function logitLens(l, tokens) {
    const list = (items) => el("ol", {}, ...items.map(([t, v]) => el("li", { text: `${tokenText(tokens, t)}  ${v.toFixed(2)}` })));
    return el("div", { class: "logits" }, el("div", {}, el("div", { text: "promoted" }), list(l.top)),
      el("div", {}, el("div", { text: "suppressed" }), list(l.bottom)));
  }

  const tokenText = (tokens, t) => (tokens[t] ? tokens[t][0] : "#" + t);

  function example(ex, maxAct, tokens) {
    const ctx = el("span", { class: "context" });
    ex.tokens.forEach((t, j) => {
      const info = tokens[t] || ["#" + t, true];
      if (j > 0 && info[1]) ctx.append(" ");
      const act = ex.acts[j];
      const alpha = maxAct > 0 ? Math.min(1, Math.max(0, act / maxAct)) : 0;
      const span = el("span", {
        class: "tok" + (j === ex.centre ? " centre" : ""), "data-act": String(act), "data-label": labelName(ex.labels[j]),
        title: `${info[0]}: gold label ${labelName(ex.labels[j])}, activation ${act}`,
        style: `background: rgba(255, 140, 0, ${alpha.toFixed(3)})`, text: info[0],
      });
      ctx.append(span);
    });
    return el("div", { class: "example", "data-seq": String(ex.seq), "data-pos": String(ex.pos) },
      el("span", { class: "value", text: fixed(ex.act, 3) }), ctx);
  }

  return { receive };
})();
