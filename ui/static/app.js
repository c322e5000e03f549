// Symphony dashboard: the only script besides htmx. It keeps a live
// transcript scrolled to its end while the operator is at the end, and stops
// following as soon as they scroll up (a button brings them back).
(function () {
  "use strict";
  var following = true;
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }
  function button() { return document.getElementById("follow"); }
  function show() {
    var b = button();
    if (b) { b.hidden = following; }
  }
  window.addEventListener("scroll", function () { following = atBottom(); show(); }, { passive: true });
  document.addEventListener("htmx:sseBeforeMessage", function () { following = atBottom(); });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.target && e.target.id === "transcript" && following) {
      window.scrollTo(0, document.documentElement.scrollHeight);
    }
    show();
  });
  document.addEventListener("click", function (e) {
    if (e.target && e.target.id === "follow") {
      following = true;
      window.scrollTo(0, document.documentElement.scrollHeight);
      show();
    }
  });
})();
