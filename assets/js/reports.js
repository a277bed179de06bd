// The funnel builder in place: "Add a step" copies the last row (emptied) and ✕ removes its
// row, without a round trip; the server does the same for these buttons when this script
// is not running. A step's kind chooses which suggestions its box offers.
(function () {
  "use strict";

  function renumber(list) {
    var rows = list.querySelectorAll(".step-row");
    Array.prototype.forEach.call(rows, function (row, i) {
      var n = String(i + 1);
      row.querySelectorAll("[aria-label]").forEach(function (el) {
        el.setAttribute("aria-label", el.getAttribute("aria-label").replace(/\d+/, n));
      });
      var remove = row.querySelector(".remove-step");
      if (remove) remove.value = String(i);
    });
    var form = list.closest("form");
    var max = parseInt(form.getAttribute("data-max-steps") || "8", 10);
    var add = form.querySelector(".add-step");
    if (add) add.disabled = rows.length >= max;
  }

  function suggest(select) {
    var row = select.closest(".step-row");
    var box = row && row.querySelector("input[list]");
    if (!box) return;
    var events = select.value === "event";
    box.setAttribute("list", events ? "event-names" : "page-paths");
    if (box.placeholder !== "any event") {
      box.placeholder = events ? "event name" : "/path or /glob/*";
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".add-step, .remove-step");
    if (!button) return;
    var list = button.closest("form").querySelector("ol.steps");
    var rows = list.querySelectorAll(".step-row");
    event.preventDefault();
    if (button.classList.contains("add-step")) {
      var copy = rows[rows.length - 1].cloneNode(true);
      copy.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      list.appendChild(copy);
      renumber(list);
      copy.querySelector("input[name=target]").focus();
    } else if (rows.length > 1) {
      button.closest(".step-row").remove();
      renumber(list);
    } else {
      rows[0].querySelectorAll("input").forEach(function (input) { input.value = ""; });
    }
  });

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches(".step-row select")) suggest(select);
  });

  htmx.onLoad(function (scope) {
    if (!scope.querySelectorAll) return;
    scope.querySelectorAll("ol.steps").forEach(renumber);
  });
})();
