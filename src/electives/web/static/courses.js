// Search-as-you-type for the course fields (progressive enhancement: without this file the fields still work,
// with the browser's own <datalist> suggestions). ARIA 1.2 combobox pattern: arrow keys move, Enter picks,
// Escape closes; the list is announced through aria-activedescendant.
(function () {
  "use strict";
  var DELAY_MS = 150;
  var LIMIT = 8;
  var counter = 0;

  function enhance(input) {
    var id = "suggest-" + (counter++);
    var list = document.createElement("ul");
    list.id = id;
    list.className = "suggestions";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    input.parentNode.appendChild(list);
    input.removeAttribute("list");
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", id);
    input.setAttribute("aria-expanded", "false");
    var timer = null;
    var active = -1;
    var items = [];
    var seq = 0;

    function close() {
      list.hidden = true;
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }

    function highlight(i) {
      var nodes = list.children;
      for (var j = 0; j < nodes.length; j++) {
        nodes[j].setAttribute("aria-selected", j === i ? "true" : "false");
      }
      active = i;
      if (i >= 0 && nodes[i]) {
        input.setAttribute("aria-activedescendant", nodes[i].id);
        nodes[i].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function pick(i) {
      if (i < 0 || i >= items.length) return;
      input.value = items[i].course;
      close();
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }

    function show(courses) {
      items = courses;
      list.textContent = "";
      courses.forEach(function (c, i) {
        var li = document.createElement("li");
        li.id = id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        var code = document.createElement("span");
        code.className = "code";
        code.textContent = c.course;
        li.appendChild(document.createTextNode(c.name + " "));
        li.appendChild(code);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); pick(i); });
        list.appendChild(li);
      });
      if (courses.length) {
        list.hidden = false;
        input.setAttribute("aria-expanded", "true");
        highlight(-1);
      } else {
        close();
      }
    }

    function search() {
      var q = input.value.trim();
      if (!q) { close(); return; }
      var mine = ++seq;
      fetch("/api/v1/courses?limit=" + LIMIT + "&q=" + encodeURIComponent(q), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { courses: [] }; })
        .then(function (data) { if (mine === seq && document.activeElement === input) show(data.courses || []); })
        .catch(function () { close(); });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(search, DELAY_MS);
    });
    input.addEventListener("keydown", function (e) {
      if (list.hidden) {
        if (e.key === "ArrowDown" && input.value.trim()) { search(); e.preventDefault(); }
        return;
      }
      if (e.key === "ArrowDown") { highlight(Math.min(active + 1, items.length - 1)); e.preventDefault(); }
      else if (e.key === "ArrowUp") { highlight(Math.max(active - 1, 0)); e.preventDefault(); }
      else if (e.key === "Enter" && active >= 0) { pick(active); e.preventDefault(); }
      else if (e.key === "Escape") { close(); e.preventDefault(); }
    });
    input.addEventListener("blur", function () { setTimeout(close, 100); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var inputs = document.querySelectorAll("input.course-input");
    for (var i = 0; i < inputs.length; i++) enhance(inputs[i]);
    var summary = document.querySelector(".error-summary[tabindex]");
    if (summary) summary.focus();
  });
})();
