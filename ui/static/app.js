// Symphony dashboard: the only script besides htmx. It keeps a live
// transcript scrolled to its end while the operator is at the end, and stops
// following as soon as they scroll up (a button brings them back).
(function () {
  "use strict";
  var following = true;
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }
  function transcript() { return document.getElementById("transcript"); }
  function show() {
    var b = document.getElementById("follow");
    if (b) { b.hidden = following; }
  }
  function toEnd() { window.scrollTo(0, document.documentElement.scrollHeight); }
  // Only a scroll changes whether we follow: new content never does.
  window.addEventListener("scroll", function () { following = atBottom(); show(); }, { passive: true });
  document.addEventListener("htmx:afterSettle", function () {
    if (following && transcript()) { toEnd(); }
    show();
  });
  // A live run page opens at the end of its transcript, following it.
  document.addEventListener("DOMContentLoaded", function () {
    var t = transcript();
    if (t && t.closest("[sse-connect]")) { toEnd(); }
    following = true;
    show();
  });
  document.addEventListener("click", function (e) {
    if (e.target && e.target.id === "follow") {
      following = true;
      toEnd();
      show();
    }
  });
})();
