// Dashboard charts: each [data-plot] holder carries a Plotly figure as JSON and names the
// element to draw it in. Swapped fragments bring new holders (htmx.onLoad sees each one);
// the chart element itself stays, so Plotly.react updates it in place (no flicker, no plots
// piling up in memory).
(function () {
  "use strict";
  function themed(layout) {
    var style = getComputedStyle(document.body);
    layout.font = { color: style.color, family: style.fontFamily };
    return layout;
  }

  function render(scope) {
    if (!window.Plotly || !scope.querySelectorAll) return;
    var holders = Array.prototype.slice.call(scope.querySelectorAll("[data-plot]"));
    if (scope.hasAttribute && scope.hasAttribute("data-plot")) holders.push(scope);
    holders.forEach(function (holder) {
      var target = document.getElementById(holder.getAttribute("data-plot"));
      var source = holder.querySelector("script[type='application/json']");
      if (!target || !source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.react(target, figure.data, themed(figure.layout),
                   { displayModeBar: false, responsive: true });
      target.setAttribute("data-points", String((figure.data[0] && figure.data[0].x || []).length));
    });
  }

  htmx.onLoad(render);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
    render(document);
  });
})();
