// Swagger UI over the live /openapi.json; the tab's API key (the console's, sessionStorage;
// asked for in key.js's in-page dialog on a 401) is sent with the document's request and with
// every "Try it out" request.
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const spec = await (await serKey.fetch("/openapi.json")).json();
  window.ui = SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (req) => {
      const key = serKey.get();
      if (key && !req.headers.Authorization) req.headers.Authorization = "Bearer " + key;
      return req;
    },
  });
});
