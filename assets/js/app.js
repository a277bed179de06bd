// What htmx does not know about our pages, in one place:
// 1. The whole view (range, filters, tabs, chart metric) lives in the address bar. A control
//    says only what it changes (data-view); the request is the current URL with that change,
//    so a tab switched a minute ago is never lost by a link rendered before it. The server
//    answers with the canonical URL of the new view (HX-Push-Url), so back and bookmarks work.
// 2. Polling (data-poll) pauses while the browser tab is hidden, and catches up when shown.
// 3. A poll that fails keeps what is shown, marks it stale and retries on the next tick;
//    any other request that fails says so above the page.
// 4. Copy buttons (data-copy) copy their target's text.
// 5. A one-time message token (flash) leaves the address bar once its page is shown, so a
//    bookmark or a shared link never carries it.
(function () {
  "use strict";

  function fromForm(form, params) {
    var f = form.elements;
    var range = f.range ? f.range.value : "30d";
    var rangeChanged = f.range && !f.range.options[f.range.selectedIndex].defaultSelected;
    var datesChanged = ["start", "end"].some(function (n) {
      return f[n] && f[n].value !== f[n].defaultValue;
    });
    // a typed date means "these dates", whatever the range box still says; choosing a range
    // means "that range", whatever dates the boxes still show
    if (datesChanged && !rangeChanged) range = "custom";
    params.set("range", range);
    ["start", "end"].forEach(function (n) {
      if (range === "custom" && f[n] && f[n].value) params.set(n, f[n].value);
      else params.delete(n);
    });
    if (f.interval && f.interval.value) params.set("interval", f.interval.value);
    else params.delete("interval");
    if (f.compare && f.compare.checked) params.set("compare", "off");
    else params.delete("compare");
  }

  function applyChange(change, params, elt) {
    if (change.form) fromForm(elt.closest("form"), params);
    Object.keys(change.set || {}).forEach(function (k) {
      if (change.set[k] === "") params.delete(k);
      else params.set(k, change.set[k]);
    });
    if (change.filter) {
      var kept = params.getAll("filter").filter(function (f) { return f !== change.filter; });
      params.delete("filter");
      kept.concat([change.filter]).forEach(function (f) { params.append("filter", f); });
    }
    if (change.filters) {  // a saved segment: its filters replace the view's
      params.delete("filter");
      change.filters.forEach(function (f) { params.append("filter", f); });
    }
    if (change.unfilter) {
      var rest = params.getAll("filter").filter(function (f) { return f !== change.unfilter; });
      params.delete("filter");
      rest.forEach(function (f) { params.append("filter", f); });
    }
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    var holder = elt.closest && elt.closest("[data-view]");
    if (!holder) return;
    var params = new URLSearchParams(location.search);
    params.delete("flash");
    applyChange(JSON.parse(holder.getAttribute("data-view")), params, holder);
    var parts = event.detail.path.split("?");
    new URLSearchParams(parts[1] || "").forEach(function (v, k) { params.set(k, v); });
    event.detail.path = parts[0] + "?" + params.toString();
    event.detail.parameters = {};
    event.detail.headers["X-View-Change"] = "1";
  });

  // polling: only for eyes that can see it
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (document.hidden && elt.hasAttribute && elt.hasAttribute("data-poll")) {
      event.preventDefault();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) document.dispatchEvent(new Event("gatrix:visible"));
  });

  // a change the server refused (or a lost connection) says so, instead of doing nothing
  function refused(event) {
    var main = document.querySelector("main");
    var note = document.getElementById("swap-error") || document.createElement("p");
    var xhr = event.detail.xhr;
    note.id = "swap-error";
    note.className = "error";
    note.setAttribute("role", "alert");
    note.textContent = xhr && xhr.status
      ? "This view could not be shown (" + xhr.status + "). Change it or reload the page."
      : "The server could not be reached. Check the connection and try again.";
    if (main && !note.parentNode) main.insertBefore(note, main.firstChild);
  }
  document.addEventListener("htmx:afterSwap", function (event) {
    var note = document.getElementById("swap-error");
    var id = (event.detail.target && event.detail.target.id) || "";
    if (note && (id === "dash" || id.indexOf("panel-") === 0)) note.remove();
  });

  function stale(event) {
    var elt = event.detail.elt;
    if (!elt.hasAttribute || !elt.hasAttribute("data-poll")) return refused(event);
    elt.classList.add("stale");
    if (!elt.querySelector(".inline-error")) {
      var note = document.createElement("p");
      note.className = "inline-error";
      note.setAttribute("role", "status");
      note.textContent = "Could not refresh — retrying…";
      elt.appendChild(note);
    }
  }
  document.addEventListener("htmx:responseError", stale);
  document.addEventListener("htmx:sendError", stale);

  // a swapped-in tab panel takes the keyboard focus its tab had
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (!target || !target.closest) return;
    var panel = document.getElementById(target.id) || target;
    var chosen = panel.querySelector && panel.querySelector("[role=tab][aria-selected=true]");
    if (chosen && event.detail.requestConfig && event.detail.requestConfig.elt &&
        event.detail.requestConfig.elt.getAttribute("role") === "tab") chosen.focus();
  });

  // Links to the project's other pages carry the range and filters in view. The page's
  // controls swap the view with htmx and move the address bar, not these links: read the
  // scope from the address bar when one is clicked.
  var SCOPE = ["range", "start", "end", "filter"];
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-keep-scope]");
    if (!link) return;
    var here = new URLSearchParams(window.location.search);
    if (!here.has("range")) return;
    var url = new URL(link.href, window.location.href);
    SCOPE.forEach(function (key) { url.searchParams.delete(key); });
    SCOPE.forEach(function (key) {
      here.getAll(key).forEach(function (value) { url.searchParams.append(key, value); });
    });
    link.href = url.toString();
  });

  var shown = new URL(window.location.href);
  if (shown.searchParams.has("flash") && window.history.replaceState) {
    shown.searchParams.delete("flash");
    window.history.replaceState(window.history.state, "", shown.toString());
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (target && navigator.clipboard) navigator.clipboard.writeText(target.innerText.trim());
    button.textContent = "Copied";
  });
})();
