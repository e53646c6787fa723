// allrep: presentation of the executed notebooks' frames (their text is never changed).
// 1. A header may wrap after an underscore, so snake_case column names do not widen a frame.
// 2. A frame still wider than the article's column after layout is squeezed (allrep.css): smaller type, and its
//    cells may break anywhere. The browser test measures every page with this script applied.
(function () {
  function breakHeaders() {
    document.querySelectorAll("article table th").forEach(function (th) {
      var walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT), node;
      while ((node = walker.nextNode())) {
        if (node.nodeValue.indexOf("_\u200b") < 0) node.nodeValue = node.nodeValue.replace(/_/g, "_\u200b");
      }
    });
  }
  function squeeze() {
    document.querySelectorAll("article div.cell_output table.dataframe").forEach(function (t) {
      var r = t.getBoundingClientRect(), room = t.parentElement.clientWidth;
      if (r.width > 0 && r.width > room + 1) t.classList.add("allrep-squeezed");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { breakHeaders(); squeeze(); });
  window.addEventListener("load", squeeze);
  document.addEventListener("toggle", squeeze, true);  // a dropdown opened: measure what it shows
})();
