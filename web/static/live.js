// Live refresh: re-fetch each [data-live] element's fragment every few seconds and swap it
// in. No framework, no CDN; the page is complete without it.
(function () {
  "use strict";

  function follow(el) {
    var every = Number(el.getAttribute("data-every") || 3) * 1000;
    var count = 0;
    function tick() {
      fetch(el.getAttribute("data-live"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            el.innerHTML = html;
            count += 1;
            el.setAttribute("data-refreshes", String(count));
            el.classList.remove("stale");
          } else {
            el.classList.add("stale");
          }
        })
        .catch(function () { el.classList.add("stale"); })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  document.querySelectorAll("[data-live]").forEach(follow);
})();
