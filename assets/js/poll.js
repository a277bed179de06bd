// Polling for server-rendered fragments: an element with data-poll-url is replaced by the
// fragment the URL returns, every data-poll-every ms, only while the tab is visible. A
// returned fragment without data-poll-url ends the polling. Copy buttons copy their target.
(function () {
  function schedule(el) {
    var every = parseInt(el.getAttribute("data-poll-every") || "5000", 10);
    setTimeout(function () { refresh(el); }, every);
  }
  function refresh(el) {
    if (!document.body.contains(el)) return;
    if (document.hidden) { schedule(el); return; }
    fetch(el.getAttribute("data-poll-url"), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var box = document.createElement("div");
        box.innerHTML = html.trim();
        var next = box.firstElementChild;
        if (!next) { schedule(el); return; }
        el.replaceWith(next);
        document.dispatchEvent(new CustomEvent("fragment:swapped", { detail: next }));
        if (next.hasAttribute("data-poll-url")) schedule(next);
      })
      .catch(function () {
        // keep what is shown, say it is stale, and try again on the next tick
        el.classList.add("stale");
        if (!el.querySelector(".inline-error")) {
          var note = document.createElement("p");
          note.className = "inline-error";
          note.setAttribute("role", "status");
          note.textContent = "Could not refresh — retrying…";
          el.appendChild(note);
        }
        schedule(el);
      });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll-url]").forEach(schedule);
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.querySelector(button.getAttribute("data-copy"));
        if (target && navigator.clipboard) navigator.clipboard.writeText(target.innerText.trim());
        button.textContent = "Copied";
      });
    });
  });
})();
