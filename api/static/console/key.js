// The API key, shared by the console and /docs: asked for in an in-page dialog (a labelled
// password field in a modal <dialog>: focus stays in it, Enter submits) on the first 401, and
// kept in sessionStorage, so it lives as long as this tab and no other tab sees it.
"use strict";

const serKey = (() => {
  const NAME = "ser-api-key";
  let waiters = [];

  function dialog() {
    let node = document.getElementById("key-dialog");
    if (node) return node;
    node = document.createElement("dialog");
    node.id = "key-dialog";
    node.setAttribute("aria-labelledby", "key-title");
    node.setAttribute("aria-describedby", "key-help");
    node.innerHTML = `
      <form id="key-form" method="dialog">
        <h2 id="key-title">API key</h2>
        <p id="key-help">This service asks for an API key. It is kept for this tab only
          (sessionStorage) and sent as <code>Authorization: Bearer</code>.</p>
        <label for="key-input">API key</label>
        <input id="key-input" name="key" type="password" autocomplete="off" required>
        <p id="key-error" class="key-error" role="alert"></p>
        <button type="submit">Use this key</button>
      </form>`;
    document.body.append(node);
    node.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = node.querySelector("#key-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(NAME, value);
      node.querySelector("#key-input").value = "";
      node.close();
      const resolve = waiters; waiters = [];
      resolve.forEach((r) => r());
    });
    node.addEventListener("cancel", (event) => event.preventDefault());  // the key is needed
    return node;
  }

  return {
    get: () => sessionStorage.getItem(NAME),
    // Resolves once a key has been given (every caller waiting meanwhile shares one dialog).
    ask(message) {
      const node = dialog();
      node.querySelector("#key-error").textContent = message || "";
      if (!node.open) node.showModal();
      node.querySelector("#key-input").focus();
      return new Promise((resolve) => waiters.push(resolve));
    },
    // fetch() with the tab's key; a 401 asks for a key (again) and retries.
    async fetch(path, options = {}) {
      for (;;) {
        const headers = new Headers(options.headers || {});
        const key = sessionStorage.getItem(NAME);
        if (key) headers.set("Authorization", "Bearer " + key);
        const resp = await fetch(path, { ...options, headers });
        if (resp.status !== 401) return resp;
        await this.ask(key ? "That key was refused; try again." : "");
      }
    },
  };
})();
