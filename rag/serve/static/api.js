// Shared by both pages: the API key, authorized fetch, and a reader of server-sent events.
"use strict";

const api = {
  // A key given as /#key=KEY is kept for this tab only, then removed from the address bar.
  key() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
    if (fromHash) {
      sessionStorage.setItem("rag-api-key", fromHash);
      history.replaceState(null, "", location.pathname);
    }
    return sessionStorage.getItem("rag-api-key") || "";
  },

  setKey(value) {
    sessionStorage.setItem("rag-api-key", value);
  },

  async fetch(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    const key = api.key();
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(path, { ...options, headers });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = (await response.json()).error.message;
      } catch (_) { /* not a JSON error body */ }
      throw new Error(message);
    }
    return response;
  },

  // Calls onEvent(name, data) for each event of a text/event-stream response body.
  async readEvents(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  },

  // Opens a served file (it needs the key header, so it comes as a blob).
  async open(path) {
    const blob = await (await api.fetch(path)).blob();
    window.open(URL.createObjectURL(blob), "_blank", "noopener");
  },

  element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);  // strings become text nodes, never HTML
    return node;
  },

  keyField(health, onChange) {
    const label = document.getElementById("key-label");
    const input = document.getElementById("api-key");
    if (!health.auth) return;
    label.hidden = false;
    input.value = api.key();
    input.addEventListener("change", () => { api.setKey(input.value.trim()); onChange && onChange(); });
  },
};
