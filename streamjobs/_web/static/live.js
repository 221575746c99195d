// The only script: live timelines over SSE, periodic overview refresh, "select all".
// Content always arrives as server-rendered, escaped HTML; nothing here builds markup.
(function () {
  "use strict";
  function swap(el, url) {
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { el.innerHTML = html; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var tl = document.getElementById("timeline");
    if (tl && window.EventSource) {
      var live = document.getElementById("live");
      var source = new EventSource(tl.dataset.sse);
      source.addEventListener("status", function () { swap(tl, tl.dataset.fragment); });
      source.onopen = function () { if (live) live.classList.remove("off"); };
      source.onerror = function () { if (live) live.classList.add("off"); };
    }
    var ov = document.getElementById("overview");
    if (ov) {
      setInterval(function () { swap(ov, ov.dataset.refresh).catch(function () {}); }, 3000);
    }
    document.querySelectorAll("[data-toggle-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        document.querySelectorAll("input[name='" + box.dataset.toggleAll + "']:not(:disabled)")
          .forEach(function (c) { c.checked = box.checked; });
      });
    });
  });
})();
