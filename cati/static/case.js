// The case screen: keyboard-only rating entry, saved as keyed (no build step needed).
// Keys 0-9 answer the current unit (saved at once), Enter confirms and moves on,
// Backspace goes back to the previous unit asked in this call.
(function () {
  "use strict";
  var T = window.CATI_TEXT || {};
  var token = document.querySelector('meta[name="csrf-token"]').content;
  var box = document.getElementById("questions");
  var status = document.getElementById("answer-status");
  var callState = document.getElementById("call-state");
  var items = Array.prototype.slice.call(box.querySelectorAll("li.unit[data-asked='1']"));
  var labels = {};
  Array.prototype.forEach.call(document.querySelectorAll(".scale li"), function (li) {
    labels[li.dataset.key] = li.dataset.label;
  });
  var validKeys = Object.keys(labels);
  var open = box.dataset.open === "1";
  var current = 0;

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": token,
                "Accept": "application/json"},
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {ok: false, error: r.statusText}; })
        .then(function (data) { if (!r.ok) { data.ok = false; } return data; });
    });
  }

  function show() {
    items.forEach(function (li, i) { li.classList.toggle("current", i === current); });
    if (current >= items.length) {
      status.textContent = T.all_done;
      var code = document.getElementById("code");
      if (code && !code.value) { code.value = "1.1"; toggleFields(); }
    }
  }

  function save(li, key) {
    if (!open) { status.textContent = T.dial_first; return; }
    li.dataset.rating = key;
    li.querySelector(".answer").textContent = key + " " + labels[key];
    li.classList.add("pending");
    post(box.dataset.answerUrl, {unit_id: Number(li.dataset.unit), key: key}).then(function (d) {
      li.classList.remove("pending");
      li.classList.toggle("saved", !!d.ok);
      li.classList.toggle("failed", !d.ok);
      status.textContent = d.ok ? T.saved : (T.failed + ": " + (d.error || ""));
    });
  }

  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) {
      return;
    }
    if (ev.ctrlKey || ev.altKey || ev.metaKey) { return; }
    var li = items[current];
    if (/^[0-9]$/.test(ev.key)) {
      ev.preventDefault();
      if (li && validKeys.indexOf(ev.key) >= 0) { save(li, ev.key); }
    } else if (ev.key === "Enter") {
      if (li && li.dataset.rating) {
        ev.preventDefault();
        li.classList.add("done");
        current += 1;
        show();
        if (current >= items.length) { document.getElementById("close").focus(); }
      }
    } else if (ev.key === "Backspace") {
      if (current > 0) {
        ev.preventDefault();
        current -= 1;
        items[current].classList.remove("done");
        show();
      }
    }
  });

  function dial(how) {
    post(box.dataset.dialUrl + "?how=" + how, {}).then(function (d) {
      if (d.ok) {
        open = true;
        callState.textContent = T.call_open;
        var back = document.getElementById("give-back");
        if (back) { back.hidden = true; }
        box.focus();
      }
      else { callState.textContent = d.error || ""; }
    });
  }
  ["dial", "dial-manual"].forEach(function (id) {
    var b = document.getElementById(id);
    if (b) { b.addEventListener("click", function () { dial(b.dataset.how); }); }
  });
  document.getElementById("consent").addEventListener("click", function () {
    post(box.dataset.consentUrl, {}).then(function (d) {
      callState.textContent = d.ok ? T.consent : (d.error || "");
      box.focus();
    });
  });

  var code = document.getElementById("code");
  function toggleFields() {
    document.getElementById("appointment").hidden = code.value !== "2.211";
    document.getElementById("conversion-label").hidden =
      ["2.1111", "2.1121"].indexOf(code.value) < 0;
  }
  code.addEventListener("change", toggleFields);
  toggleFields();

  setInterval(function () { post(box.dataset.keepaliveUrl, {}); }, 60000);
  show();
  box.focus();
})();
