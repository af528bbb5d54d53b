(function () {
  "use strict";
  const started = performance.now();
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const V = D.videos, L = D.labels, n = V.id.length, T = D.thumbs || {};
  const thumb = (s) => T[`${s[0]}:${s[6]}`] ? `<img class="thumb" alt="" src="${T[`${s[0]}:${s[6]}`]}">` : "";
  const S = {label: "", status: "", kind: "", q: "", min: "", max: "", wrong: "", sort: "index", dir: 1, page: 0, size: 50, video: ""};
  for (const part of decodeURIComponent(location.hash.slice(1)).split("&")) {
    const [k, v] = part.split("=");
    if (k in S && v !== undefined) S[k] = ["page", "size", "dir"].includes(k) ? Number(v) : v;
  }
  const fmt = (x) => (x === null || x === undefined || Number.isNaN(x)) ? "" :
    (typeof x === "number" ? String(Number(x.toPrecision(3))) : String(x));
  const esc = (t) => String(t).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const $ = (id) => document.getElementById(id);
  const colour = (i) => `hsl(${(i * 137.5) % 360}, 55%, 55%)`;

  function options(select, values, label) {
    select.innerHTML = `<option value="">${label}</option>` + values.map((v) => `<option>${esc(v)}</option>`).join("");
  }
  options($("f-label"), L, "any label");
  options($("f-status"), ["ok", "failed"], "any status");
  options($("f-kind"), [...new Set(V.kind.filter((k) => k))].sort(), "any error kind");
  const FILTERS = ["label", "status", "kind", "q", "min", "max"].concat(V.truth ? ["wrong"] : []);
  if (!V.truth) $("f-wrong").parentElement.remove();
  const isWrong = (i) => V.truth && V.truth[i] !== null && V.status[i] === "ok" && V.pred[i] !== V.truth[i];
  const link = (i) => V.src && V.src[i] ? `<a href="${esc(V.src[i])}" title="${esc(V.src[i])}">${esc(V.id[i])}</a>` : esc(V.id[i]);

  function matches(i) {
    if (S.label && V.pred[i] !== S.label) return false;
    if (S.status && V.status[i] !== S.status) return false;
    if (S.kind && V.kind[i] !== S.kind) return false;
    if (S.q && !V.id[i].toLowerCase().includes(S.q.toLowerCase())) return false;
    if (S.min !== "" && !(V.score[i] >= Number(S.min))) return false;
    if (S.max !== "" && !(V.score[i] <= Number(S.max))) return false;
    if (S.wrong && !isWrong(i)) return false;
    return true;
  }
  const COLUMNS = [["id", "video_id"], ["truth", "label"], ["pred", "pred_label"], ["score", "pred_score"],
                   ["margin", "margin"], ["status", "status"], ["error", "error"], ["duration", "duration_s"],
                   ["shots", "shots"], ["model", "model_top_k"]].filter(([key]) => (key !== "truth" || V.truth) && (key !== "model" || V.model));
  function renderTable() {
    let rows = [];
    for (let i = 0; i < n; i++) if (matches(i)) rows.push(i);
    if (S.sort !== "index") {
      const col = V[S.sort];
      rows.sort((a, b) => {
        const x = col[a], y = col[b];
        if (x === y) return a - b;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * S.dir;
      });
    }
    const pages = Math.max(1, Math.ceil(rows.length / S.size));
    S.page = Math.min(Math.max(0, S.page), pages - 1);
    const shown = rows.slice(S.page * S.size, (S.page + 1) * S.size);
    const head = COLUMNS.map(([key, name]) =>
      `<th class="sortable" data-key="${key}">${esc(name)}${S.sort === key ? (S.dir > 0 ? " &#9650;" : " &#9660;") : ""}</th>`).join("");
    const body = shown.map((i) => `<tr class="${esc(V.status[i])}${V.id[i] === S.video ? " selected" : ""}" data-i="${i}">` +
      COLUMNS.map(([key]) => `<td>${key === "id" ? link(i) : esc(fmt(V[key][i]))}</td>`).join("") + "</tr>").join("");
    $("videos").innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
    $("pager-text").textContent = `${rows.length.toLocaleString("en")} of ${n.toLocaleString("en")} videos match; page ${S.page + 1} of ${pages}`;
    $("videos").querySelectorAll("th").forEach((th) => th.onclick = () => {
      S.dir = S.sort === th.dataset.key ? -S.dir : 1; S.sort = th.dataset.key; update();
    });
    $("videos").querySelectorAll("tbody tr").forEach((tr) => tr.onclick = () => { S.video = V.id[Number(tr.dataset.i)]; update(); });
  }
  function renderKinds() {
    const counts = {};
    V.kind.forEach((k) => { if (k) counts[k] = (counts[k] || 0) + 1; });
    const kinds = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    $("kinds").innerHTML = kinds.length ? "<tr><th>error kind</th><th>videos</th><th>example</th></tr>" + kinds.map(([k, c]) =>
      `<tr><td data-kind="${esc(k)}">${esc(k)}</td><td>${c.toLocaleString("en")}</td><td>${esc(V.error[V.kind.indexOf(k)])}</td></tr>`).join("")
      : "<tr><td class='none'>no failures</td></tr>";
    $("kinds").querySelectorAll("td[data-kind]").forEach((td) => td.onclick = () => {
      S.kind = td.dataset.kind; S.status = "failed"; S.page = 0; update();
    });
  }
  function renderQueue() {
    const ok = [];
    for (let i = 0; i < n; i++) if (V.status[i] === "ok" && V.margin[i] !== null) ok.push(i);
    ok.sort((a, b) => V.margin[a] - V.margin[b]);
    $("queue-videos").innerHTML = "<tr><th>video_id</th><th>pred_label</th><th>score</th><th>margin</th></tr>" +
      ok.slice(0, 20).map((i) => `<tr data-i="${i}"><td>${esc(V.id[i])}</td><td>${esc(V.pred[i])}</td><td>${fmt(V.score[i])}</td><td>${fmt(V.margin[i])}</td></tr>`).join("");
    const seg = D.segments.slice().sort((a, b) => a[5] - b[5]).slice(0, 20);
    const frame = D.thumbs ? "<th>frame</th>" : "";  // no empty column when the run kept no thumbnails
    $("queue-segments").innerHTML = `<tr>${frame}<th>video_id</th><th>from (s)</th><th>to (s)</th><th>label</th><th>score</th><th>margin</th></tr>` +
      seg.map((s) => `<tr data-i="${s[0]}">${D.thumbs ? `<td>${thumb(s)}</td>` : ""}<td>${esc(V.id[s[0]])}</td><td>${fmt(s[1])}</td><td>${fmt(s[2])}</td><td>${esc(L[s[3]])}</td><td>${fmt(s[4])}</td><td>${fmt(s[5])}</td></tr>`).join("");
    document.querySelectorAll("#queue-videos tr[data-i], #queue-segments tr[data-i]").forEach((tr) =>
      tr.onclick = () => { S.video = V.id[Number(tr.dataset.i)]; update(); });
  }
  function renderHistograms() {
    const bins = 10, w = 220, h = 90, parts = [];
    L.forEach((label, li) => {
      const counts = new Array(bins).fill(0);
      for (let i = 0; i < n; i++) if (V.pred[i] === label && V.score[i] !== null) counts[Math.min(bins - 1, Math.floor(V.score[i] * bins))]++;
      const top = Math.max(1, ...counts), total = counts.reduce((a, b) => a + b, 0);
      const bars = counts.map((c, b) => `<rect x="${b * (w / bins) + 1}" y="${h - 14 - (h - 24) * c / top}" width="${w / bins - 2}" height="${(h - 24) * c / top}" fill="${colour(li)}"><title>${fmt(b / bins)}-${fmt((b + 1) / bins)}: ${c}</title></rect>`).join("");
      parts.push(`<div class="hist"><div>${esc(label)} (${total.toLocaleString("en")} videos)</div><svg width="${w}" height="${h}">${bars}` +
        `<text x="0" y="${h - 2}" font-size="10">0</text><text x="${w - 8}" y="${h - 2}" font-size="10">1</text><text x="${w / 2 - 14}" y="${h - 2}" font-size="10">score</text></svg></div>`);
    });
    $("histograms").innerHTML = parts.join("");
  }
  function renderTimeline() {
    const i = V.id.indexOf(S.video);
    if (i < 0) { $("timeline").innerHTML = "<p class='muted'>Click a video (in the table or the review queue) to see its timeline.</p>"; return; }
    const segs = D.segments.filter((s) => s[0] === i), shots = D.shots.filter((s) => s[0] === i);
    const end = Math.max(V.duration[i] || 0, ...segs.map((s) => s[2]), 1e-9), w = 900, h = 70;
    const x = (t) => 10 + (w - 20) * t / end;
    const rects = segs.map((s) => `<rect x="${x(s[1])}" y="10" width="${Math.max(1, x(s[2]) - x(s[1]))}" height="30" fill="${colour(s[3])}"><title>${fmt(s[1])}-${fmt(s[2])} s: ${esc(L[s[3]])} (score ${fmt(s[4])}, margin ${fmt(s[5])})</title></rect>`).join("");
    const cuts = shots.slice(1).map((s) => `<line x1="${x(s[1])}" x2="${x(s[1])}" y1="4" y2="46" stroke="#c0392b" stroke-width="2" stroke-dasharray="4 2"></line>`).join("");
    const used = [...new Set(segs.map((s) => s[3]))];
    const legend = used.map((li) => `<span style="display:inline-block;margin-right:1rem"><span style="display:inline-block;width:12px;height:12px;background:${colour(li)}"></span> ${esc(L[li])}</span>`).join("") +
      (cuts ? "<span style='color:#c0392b'>- - shot cut</span>" : "");
    $("timeline").innerHTML = `<h3>${link(i)}: ${esc(V.pred[i] || V.status[i])} ${fmt(V.score[i])}</h3>` +
      `<svg width="${w}" height="${h}">${rects}${cuts}<text x="10" y="60" font-size="11">0 s</text><text x="${w - 50}" y="60" font-size="11">${fmt(end)} s</text></svg><div>${legend}</div>` +
      `<div class="thumbs">${segs.map((s) => thumb(s) ? `<figure>${thumb(s)}<figcaption>${fmt(s[1])}-${fmt(s[2])} s ${esc(L[s[3]])}</figcaption></figure>` : "").join("")}</div>`;
  }
  function update() {
    FILTERS.forEach((k) => { if (k === "wrong") $("f-wrong").checked = !!S.wrong; else $("f-" + k).value = S[k]; });
    renderTable(); renderTimeline();
    const hash = Object.entries(S).filter(([k, v]) => v !== "" && !(k === "page" && v === 0) && !(k === "size" && v === 50)
      && !(k === "dir" && v === 1) && !(k === "sort" && v === "index")).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
    history.replaceState(null, "", hash ? "#" + hash : location.pathname);
  }
  FILTERS.forEach((k) => $("f-" + k).oninput = () => {
    S[k] = k === "wrong" ? ($("f-wrong").checked ? "1" : "") : $("f-" + k).value; S.page = 0; update();
  });
  $("prev").onclick = () => { S.page--; update(); };
  $("next").onclick = () => { S.page++; update(); };
  renderKinds(); renderQueue(); renderHistograms(); update();
  document.body.dataset.renderMs = String(Math.round(performance.now() - started));
})();
