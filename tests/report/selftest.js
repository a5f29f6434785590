// The browser test's probe (tests/report/helpers.py `probe` puts it first in a copy of the page's
// <head>, so it sees every later error; the pages themselves never carry it). It waits until every
// audio element has loaded its metadata (or failed), then writes a JSON summary (durations, failed
// sources, broken images, sorting checks, window errors and console.error calls) into <pre id=selftest>.
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window ? "load error: " + (t.currentSrc || t.src || t.tagName) : "error: " + e.message);
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("rejection: " + e.reason); });
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  function sortChecks() {
    var bad = [], checked = 0;
    document.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        if (th.getAttribute("data-sort") !== "num") return;
        [1, -1].forEach(function (dir) {
          th.click();
          var v = Array.prototype.map.call(table.tBodies[0].rows, function (r) {
            return parseFloat(r.cells[col].getAttribute("data-v"));
          }).filter(function (x) { return !isNaN(x); });
          for (var i = 1; i < v.length; i++) if (dir * (v[i] - v[i - 1]) < 0) { bad.push(th.textContent); break; }
          checked++;
        });
      });
    });
    return {checked: checked, unsorted: bad};
  }
  window.addEventListener("load", function () {
    var audios = Array.prototype.slice.call(document.querySelectorAll("audio"));
    var waits = audios.map(function (a) {
      return new Promise(function (done) {
        if (a.readyState >= 1 || a.error) return done();
        a.addEventListener("loadedmetadata", done);
        a.addEventListener("error", done);
      });
    });
    Promise.race([Promise.all(waits), new Promise(function (r) { setTimeout(r, 8000); })]).then(function () {
      var images = Array.prototype.slice.call(document.querySelectorAll("img"));
      var out = {
        audio: audios.length,
        loaded: audios.filter(function (a) { return a.readyState >= 1 && a.duration > 0; }).length,
        durations: audios.map(function (a) { return isFinite(a.duration) ? a.duration : null; }),
        failed: audios.filter(function (a) { return !(a.duration > 0); })
          .map(function (a) { return a.getAttribute("src"); }),
        images: images.length,
        broken_images: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
          .map(function (i) { return i.getAttribute("src"); }),
        sort: sortChecks(),
        errors: errors
      };
      var pre = document.createElement("pre");
      pre.id = "selftest";
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    });
  });
})();
