// Dashboard charts: each [data-plot] holder carries a Plotly figure as JSON and names the
// element to draw it in. Polled fragments bring new holders; the chart element itself stays,
// so Plotly.react updates it in place (no flicker, no plots piling up in memory).
(function () {
  function themed(layout) {
    var style = getComputedStyle(document.body);
    layout.font = { color: style.color, family: style.fontFamily };
    return layout;
  }

  function render(scope) {
    if (!window.Plotly) return;
    (scope || document).querySelectorAll("[data-plot]").forEach(function (holder) {
      var target = document.getElementById(holder.getAttribute("data-plot"));
      var source = holder.querySelector("script[type='application/json']");
      if (!target || !source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.react(target, figure.data, themed(figure.layout),
                   { displayModeBar: false, responsive: true });
      target.setAttribute("data-points", String((figure.data[0] && figure.data[0].x || []).length));
    });
  }

  // panel tabs: swap the panel in place; the URL keeps the state (bookmarkable)
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-swap]");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    fetch(link.getAttribute("data-fragment"), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var box = document.createElement("div");
        box.innerHTML = html.trim();
        var next = box.firstElementChild;
        document.querySelector(link.getAttribute("data-swap")).replaceWith(next);
        history.replaceState(null, "", link.href);
        render(next);
        var tab = next.querySelector("a[aria-selected='true']");
        if (tab) tab.focus();
      })
      .catch(function () { location.href = link.href; });
  });

  // range, interval and comparison apply as soon as they change; a listener here rather than
  // inline onchange attributes, which the content security policy refuses to run
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.form && field.hasAttribute("data-autosubmit")) field.form.requestSubmit();
  });

  document.addEventListener("fragment:swapped", function (event) { render(event.detail); });
  document.addEventListener("DOMContentLoaded", function () { render(document); });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
    render(document);
  });
})();
