// The report page: verdict, results table, charts, and per-question answers of two combinations side by side.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (value, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const interval = (value) => (value ? `${value.mean.toFixed(3)} (${value.low.toFixed(2)}–${value.high.toFixed(2)})` : "–");

// header, value (for the bold best), text, which is better
const COLUMNS = [
  ["EM (95% CI)", (s) => s.exact_match && s.exact_match.mean, (s) => interval(s.exact_match), "max"],
  ["F1 (95% CI)", (s) => s.f1 && s.f1.mean, (s) => interval(s.f1), "max"],
  ["R@1", (s) => s.recall && s.recall[0], (s) => fmt(s.recall && s.recall[0], 3), "max"],
  ["R@5", (s) => s.recall && s.recall[4], (s) => fmt(s.recall && s.recall[4], 3), "max"],
  ["MRR", (s) => s.mrr, (s) => fmt(s.mrr, 3), "max"],
  ["Grounded", (s) => s.groundedness, (s) => fmt(s.groundedness, 2), "max"],
  ["Abstain", (s) => s.abstention, (s) => fmt(s.abstention, 2), "max"],
  ["Prompt tok", (s) => s.prompt_tokens, (s) => fmt(s.prompt_tokens, 0), "min"],
  ["p50 s", (s) => s.latency_p50_s, (s) => fmt(s.latency_p50_s, 2), "min"],
  ["p95 s", (s) => s.latency_p95_s, (s) => fmt(s.latency_p95_s, 2), "min"],
  ["q/s", (s) => s.questions_per_s, (s) => fmt(s.questions_per_s, 2), "max"],
  ["Trainable", (s) => s.trainable_params, (s) => (s.trainable_params === null ? "–" : s.trainable_params.toLocaleString("en")), "min"],
];

function renderTable(scores, verdict) {
  const best = COLUMNS.map(([, value, , better]) => {
    const values = scores.map(value).filter((v) => v !== null && v !== undefined);
    if (!values.length) return null;
    return better === "max" ? Math.max(...values) : Math.min(...values);
  });
  const head = api.element("tr", {}, api.element("th", {}, "Combination"), ...COLUMNS.map(([h]) => api.element("th", {}, h)));
  const rows = scores.map((s) => {
    const name = api.element("td", {}, s.combination);
    if (s.combination === verdict.best) name.append(" ", api.element("span", { class: "badge" }, "best"));
    if (s.combination === verdict.cheapest) name.append(" ", api.element("span", { class: "badge pick" }, "pick"));
    const cells = COLUMNS.map(([, value, text], i) => {
      const v = value(s);
      const cell = api.element("td", { class: "num" }, text(s));
      if (v !== null && v !== undefined && best[i] !== null && Math.abs(v - best[i]) < 1e-9) cell.classList.add("best");
      return cell;
    });
    return api.element("tr", {}, name, ...cells);
  });
  $("results").replaceChildren(api.element("thead", {}, head), api.element("tbody", {}, ...rows));
}

async function renderCharts(names) {
  const box = $("charts");
  box.replaceChildren();
  for (const name of names) {
    const blob = await (await api.fetch(`/v1/report/charts/${name}`)).blob();
    box.append(api.element("img", { src: URL.createObjectURL(blob), alt: name }));
  }
}

const normalize = (text) => (text || "").toLowerCase().replace(/[^\p{L}\p{N} ]/gu, "").replace(/\s+/g, " ").trim();

function renderAnswers(predictions) {
  const left = $("left").value;
  const right = $("right").value;
  const byQuestion = new Map();
  for (const p of predictions) {
    if (p.combination !== left && p.combination !== right) continue;
    if (!byQuestion.has(p.qid)) byQuestion.set(p.qid, { question: p.question, answers: p.answers });
    byQuestion.get(p.qid)[p.combination === left ? "a" : "b"] = p;
    if (left === right) byQuestion.get(p.qid).b = p;
  }
  const onlyDisagree = $("disagree").checked;
  const rows = [];
  let disagreements = 0;
  for (const [qid, row] of byQuestion) {
    const differ = !row.a || !row.b || normalize(row.a.answer) !== normalize(row.b.answer) || row.a.f1 !== row.b.f1;
    disagreements += differ ? 1 : 0;
    if (onlyDisagree && !differ) continue;
    const cell = (p) => api.element("td", { class: p && p.f1 !== null && p.f1 > 0 ? "hit" : "" },
      p ? p.answer || "(empty)" : "–", api.element("div", { class: "muted" }, p && p.f1 !== null ? `F1 ${p.f1.toFixed(2)}` : p && p.abstained ? "abstained" : ""));
    rows.push(api.element("tr", { class: differ ? "differ" : "" },
      api.element("td", {}, qid), api.element("td", {}, row.question),
      api.element("td", {}, row.answers.length ? row.answers.join(" | ") : "(unanswerable)"), cell(row.a), cell(row.b)));
  }
  const head = api.element("tr", {}, ...["Id", "Question", "Gold", `A: ${left}`, `B: ${right}`].map((h) => api.element("th", {}, h)));
  $("answers").replaceChildren(api.element("thead", {}, head), api.element("tbody", {}, ...rows));
  $("disagree-count").textContent = `${disagreements} of ${byQuestion.size} questions differ`;
}

async function load() {
  try {
    const data = await (await api.fetch("/v1/report")).json();
    const report = data.report;
    $("folder").textContent = data.folder;
    $("message").textContent = `${report.questions} questions · ${report.combinations.length} combinations · QA set ${report.settings.qa} (${report.settings.split} split)`;
    $("verdict").replaceChildren(...report.verdict.summary.map((line) => api.element("li", {}, line)));
    renderTable(report.combinations, report.verdict);
    const names = report.combinations.map((s) => s.combination);
    for (const select of [$("left"), $("right")]) {
      select.replaceChildren(...names.map((n) => api.element("option", { value: n }, n)));
      select.addEventListener("change", () => renderAnswers(data.predictions));
    }
    $("left").value = report.verdict.best || names[0];
    $("right").value = [report.verdict.cheapest, ...names].find((n) => n && n !== $("left").value) || names[0];
    $("disagree").addEventListener("change", () => renderAnswers(data.predictions));
    renderAnswers(data.predictions);
    await renderCharts(data.charts);
    document.body.dataset.state = "done";
  } catch (error) {
    $("message").replaceChildren(api.element("span", { class: "error" }, error.message));
    document.body.dataset.state = "error";
  }
}

fetch("/healthz").then((r) => r.json()).then((health) => { api.keyField(health, load); load(); });
