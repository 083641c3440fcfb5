// mcp-obs dashboard: the few things that need script. Every page works without it.
(function () {
  "use strict";
  // How often open analytics and span-list pages re-fetch themselves; the session may ask for
  // another period (the end-to-end test does, to not wait 10 s).
  var LIVE_INTERVAL_MS = Number(sessionStorage.getItem("mcpobs-live-interval-ms")) || 10000;

  function copyText(text, button) {
    var done = function () {
      var old = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("data-copied", "true");
      setTimeout(function () { button.textContent = old; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (ev) {
    var t = ev.target.closest("[data-copy], [data-dialog], [data-close]");
    if (!t) return;
    if (t.hasAttribute("data-copy")) {
      var src = document.querySelector(t.getAttribute("data-copy"));
      if (src) copyText(src.textContent, t);
    } else if (t.hasAttribute("data-dialog")) {
      var d = document.getElementById(t.getAttribute("data-dialog"));
      if (d && d.showModal) { ev.preventDefault(); d.showModal(); }
    } else if (t.hasAttribute("data-close")) {
      var dlg = t.closest("dialog");
      if (dlg) { ev.preventDefault(); dlg.close(); }
    }
  });

  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });

  // The sampling slider and its number field show the same value.
  document.addEventListener("input", function (ev) {
    var pairs = { "sampling-slider": "sampling", "sampling": "sampling-slider" };
    var other = pairs[ev.target.id] && document.getElementById(pairs[ev.target.id]);
    if (other) other.value = ev.target.value;
  });

  // Live refresh: re-fetch this page and swap the [data-live] regions, unless paused.
  function startLive() {
    var regions = document.querySelectorAll("[data-live]");
    if (!regions.length) return;
    var paused = sessionStorage.getItem("mcpobs-live-paused") === "1";
    var toggles = document.querySelectorAll("[data-live-toggle]");
    var label = function () {
      toggles.forEach(function (b) {
        b.hidden = false;
        b.textContent = paused ? "Resume live refresh" : "Pause live refresh";
        b.setAttribute("aria-pressed", paused ? "true" : "false");
      });
    };
    toggles.forEach(function (b) {
      b.addEventListener("click", function () {
        paused = !paused;
        sessionStorage.setItem("mcpobs-live-paused", paused ? "1" : "0");
        label();
      });
    });
    label();
    setInterval(function () {
      if (paused || document.hidden || document.querySelector("dialog[open]")) return;
      regions.forEach(function (el) { el.setAttribute("aria-busy", "true"); });
      fetch(location.href, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) return null;
        return r.text();
      }).then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelectorAll("[data-live]");
        var now = document.querySelectorAll("[data-live]");
        if (fresh.length !== now.length) return;
        now.forEach(function (el, i) { el.innerHTML = fresh[i].innerHTML; });
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
      }).catch(function () { /* try again at the next tick */ }).then(function () {
        document.querySelectorAll("[data-live]").forEach(function (el) { el.removeAttribute("aria-busy"); });
      });
    }, LIVE_INTERVAL_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startLive);
  } else {
    startLive();
  }
})();
