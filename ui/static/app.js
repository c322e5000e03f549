// Symphony dashboard: the only script besides htmx.
//
// 1. A live transcript stays scrolled to its end while the operator is at
//    the end. Only the operator stops that (wheel, keys, touch or the
//    scrollbar): content arriving never does. Coming back to the end, or the
//    "Follow live" button, follows again.
// 2. The live stream resumes where it was: every transcript event carries a
//    cursor as its id, copied into the stream's URL, so that a stream the
//    SSE extension re-creates does not start over; an entry already on the
//    page is never added twice.
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
  // auto marks the scroll event our own toEnd causes, so that only the
  // operator's scrolling decides whether to follow.
  var auto = false;
  function toEnd() {
    if (window.innerHeight + window.scrollY < document.documentElement.scrollHeight) { auto = true; }
    window.scrollTo(0, document.documentElement.scrollHeight);
  }
  // Moving up is the operator's intent to stop following, at once (the
  // browser may apply the scroll itself a frame later).
  window.addEventListener("wheel", function (e) {
    if (e.deltaY < 0) { following = false; show(); }
  }, { passive: true });
  window.addEventListener("keydown", function (e) {
    if (["ArrowUp", "PageUp", "Home"].indexOf(e.key) >= 0) { following = false; show(); }
  });
  window.addEventListener("scroll", function () {
    if (auto) { auto = false; return; }
    following = atBottom();
    show();
  }, { passive: true });
  document.addEventListener("htmx:afterSettle", function () {
    if (following && transcript()) { toEnd(); }
    show();
  });
  var entryId = /^<li[^>]*\sid="([^"]+)"/;
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var m = e.detail && typeof e.detail.data === "string" && entryId.exec(e.detail.data);
    if (m && document.getElementById(m[1])) { e.preventDefault(); }
  });
  document.addEventListener("htmx:sseMessage", function (e) {
    var id = e.detail && e.detail.lastEventId;
    var src = e.target && e.target.closest && e.target.closest("[sse-connect]");
    if (!id || !src || !/^\d+\.\d+\.\d+(\.\d+)?$/.test(id)) { return; }
    var url = src.getAttribute("sse-connect");
    if (url && url.indexOf("?after=") > 0) {
      src.setAttribute("sse-connect", url.replace(/\?after=[^&]*/, "?after=" + id));
    }
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
