// The ask page: stream an answer from POST /v1/ask and show its sources (file, page, score, passage).
"use strict";

const $ = (id) => document.getElementById(id);

function fileName(path) {
  return path.split(/[\\/]/).pop();
}

function renderSources(sources) {
  const list = $("sources");
  list.replaceChildren();
  for (const source of sources) {
    const open = api.element("button", { type: "button", class: "link", title: source.source }, fileName(source.source));
    open.addEventListener("click", () => api.open(`/v1/files?source=${encodeURIComponent(source.source)}`).catch(showError));
    const meta = api.element(
      "div", { class: "source-meta" },
      api.element("span", { class: "number" }, `[${source.number}]`), " ", open,
      source.page ? ` · page ${source.page}` : "",
      ` · score ${source.score.toFixed(3)}`,
      api.element("span", { class: "cited-badge" }, "cited"),
    );
    const item = api.element("li", { class: "source", "data-number": String(source.number) }, meta,
      api.element("blockquote", {}, source.text));
    list.append(item);
  }
}

function markCited(sources) {
  for (const source of sources) {
    const item = document.querySelector(`.source[data-number="${source.number}"]`);
    if (item) item.classList.toggle("cited", source.cited);
  }
}

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text || "";
  $("ask").disabled = state === "asking";
}

function showError(error) {
  setState("error", "");
  $("answer").replaceChildren(api.element("p", { class: "error" }, error.message || String(error)));
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  setState("asking", "retrieving…");
  $("answer").textContent = "";
  $("timings").textContent = "";
  $("sources").replaceChildren();
  try {
    const response = await api.fetch("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, retriever: $("retriever").value, k: Number($("k").value), stream: true }),
    });
    let answered = false;
    await api.readEvents(response, (name, data) => {
      if (name === "sources") {
        renderSources(data);
        setState("asking", "generating…");
      } else if (name === "token") {
        $("answer").textContent += data.text;
      } else if (name === "answer") {
        answered = true;
        $("answer").textContent = data.answer;
        markCited(data.sources.map((s, i) => ({ ...s, number: i + 1 })));
        const t = data.timings;
        $("timings").textContent = `first token ${t.first_token_s.toFixed(2)} s · total ${t.total_s.toFixed(2)} s · `
          + `${data.prompt_tokens} prompt tokens` + (data.omitted_passages ? ` · ${data.omitted_passages} passages did not fit` : "");
        setState("done", "");
      } else if (name === "error") {
        throw new Error(data.error.message);
      }
    });
    if (!answered) throw new Error("the answer stream ended early");
  } catch (error) {
    showError(error);
  }
}

async function start() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("model").textContent = health.model;
    for (const name of health.retrievers) $("retriever").append(api.element("option", { value: name }, name));
    $("k").value = health.k;
    $("k").max = health.max_k;
    api.keyField(health);
    $("ask-form").addEventListener("submit", ask);
    setState("idle", "");
  } catch (error) {
    showError(error);
  }
}

start();
