// ceph-rbd-exporter pages: the copy buttons. Served from the binary; the
// Content-Security-Policy allows only this script. Nothing here runs a
// command: it puts text on the clipboard.
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("button.copy") : null;
  if (!button) {
    return;
  }
  var text = button.getAttribute("data-copy") || "";
  function done(ok) {
    button.classList.remove("copied", "failed");
    button.classList.add(ok ? "copied" : "failed");
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(function () {
      button.classList.remove("copied", "failed");
      button.textContent = "Copy";
    }, 2000);
  }
  function fallback() {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    done(ok);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
  } else {
    fallback();
  }
});
