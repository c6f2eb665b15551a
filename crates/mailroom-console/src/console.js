// The console's only script: a live preview of the Email To Fax Format String. As the
// format or the sample number changes, the console formats the sample (the rules live
// there, once) and the answer replaces the preview. Without this script the Preview
// button does the same on a click.
"use strict";
(function () {
  var format = document.querySelector("input[name='fax_format']");
  var sample = document.querySelector("input[name='fax_sample']");
  var preview = document.getElementById("fax-preview");
  if (!format || !sample || !preview) {
    return;
  }
  var timer = null;
  var asked = 0;
  function update() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var question = ++asked;
      var url = "/fax-preview?format=" + encodeURIComponent(format.value) +
        "&sample=" + encodeURIComponent(sample.value);
      fetch(url, { credentials: "same-origin", redirect: "manual" }).then(function (response) {
        // A preview's answer is plain text; anything else (the session ended and the
        // login page answers) leaves the preview as it was, and the button still works.
        var type = response.headers.get("content-type") || "";
        if (type.indexOf("text/plain") !== 0) {
          return;
        }
        return response.text().then(function (text) {
          if (question !== asked) {
            return; // a newer question is on its way
          }
          var shown = document.createElement("output");
          shown.className = response.ok ? "fax-preview" : "fax-preview error";
          shown.textContent = text;
          preview.replaceChildren(shown);
        });
      }).catch(function () {
        // The console cannot be reached: the preview stays as it was.
      });
    }, 150);
  }
  // "input" as keys are typed; "change" too, for a field emptied at once (WebDriver's
  // clear, an autofill) that fires no "input".
  ["input", "change"].forEach(function (kind) {
    format.addEventListener(kind, update);
    sample.addEventListener(kind, update);
  });
})();
