// Optional: reload the dashboard every few seconds. The console works without it.
(function () {
  var script = document.currentScript;
  var seconds = parseInt(script && script.getAttribute("data-seconds"), 10);
  if (seconds > 0) {
    setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
})();
