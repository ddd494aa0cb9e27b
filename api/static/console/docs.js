// Swagger UI over the live /openapi.json; the tab's API key (the console's, sessionStorage) is
// sent with the document's request and with every "Try it out" request.
"use strict";

const KEY = "ser-api-key";

async function loadDocument() {
  for (;;) {
    const key = sessionStorage.getItem(KEY);
    const resp = await fetch("/openapi.json", key ? { headers: { Authorization: "Bearer " + key } } : {});
    if (resp.status !== 401) return resp.json();
    const given = window.prompt(key ? "That API key was refused; API key:" : "This service asks for an API key:");
    if (!given) throw new Error("no API key");
    sessionStorage.setItem(KEY, given.trim());
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  const spec = await loadDocument();
  window.ui = SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (req) => {
      const key = sessionStorage.getItem(KEY);
      if (key && !req.headers.Authorization) req.headers.Authorization = "Bearer " + key;
      return req;
    },
  });
});
