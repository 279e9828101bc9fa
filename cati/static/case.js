// The case screen: keyboard-only rating entry, saved as keyed (no build step needed).
// Keys 0-9 answer the current unit (saved at once) wherever the focus is, except in a
// text field; Enter confirms and moves on, Backspace goes back to the previous unit.
// An ended session asks for the password in place and then re-sends what was refused.
(function () {
  "use strict";
  var T = window.CATI_TEXT || {};
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta.content;
  var box = document.getElementById("questions");
  var status = document.getElementById("answer-status");
  var currentBox = document.getElementById("current-question");
  var callState = document.getElementById("call-state");
  var items = Array.prototype.slice.call(box.querySelectorAll("li.unit[data-asked='1']"));
  var allItems = box.querySelectorAll("li.unit");
  var labels = {};
  Array.prototype.forEach.call(document.querySelectorAll("#scale li"), function (li) {
    labels[li.dataset.key] = li.dataset.label;
  });
  var validKeys = Object.keys(labels);
  var open = box.dataset.open === "1";
  var consented = box.dataset.consent === "1";
  var current = 0;
  var waiting = [];  // requests refused because the session ended, re-sent after log-in

  function fill(text, values) {
    return String(text || "").replace(/\{(\w+)\}/g, function (m, k) {
      return values[k] !== undefined ? values[k] : m;
    });
  }
  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  // --- the session -------------------------------------------------------------------
  function setToken(t) {
    token = t;
    meta.content = t;
    Array.prototype.forEach.call(document.querySelectorAll('input[name="csrf_token"]'),
      function (el) { el.value = t; });
  }
  var modal = document.getElementById("reauth");
  function askPassword() {
    if (!modal.hidden) { return; }
    modal.hidden = false;
    document.getElementById("reauth-error").textContent = "";
    document.getElementById("reauth-password").focus();
  }
  document.getElementById("reauth-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var pw = document.getElementById("reauth-password");
    var err = document.getElementById("reauth-error");
    fetch(box.dataset.tokenUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        return fetch(box.dataset.reauthUrl, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": d.token,
                    "Accept": "application/json"},
          body: JSON.stringify({username: box.dataset.user, password: pw.value})
        });
      })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (!d.ok) { err.textContent = d.error || ""; pw.select(); return; }
        pw.value = "";
        setToken(d.token);
        modal.hidden = true;
        var again = waiting;
        waiting = [];
        again.forEach(function (fn) { fn(); });
        box.focus();
      })
      .catch(function () { err.textContent = T.failed; });
  });

  // POST JSON; a refusal for an ended session (or a token it no longer knows) waits for
  // the password and is then sent again, so nothing typed is lost.
  function post(url, body, opts) {
    opts = opts || {};
    return new Promise(function (resolve) {
      function send() {
        var headers = {"Content-Type": "application/json", "X-CSRF-Token": token,
                       "Accept": "application/json"};
        if (opts.background) { headers["X-Background"] = "1"; }
        fetch(url, {method: "POST", credentials: "same-origin", headers: headers,
                    body: JSON.stringify(body || {})})
          .then(function (r) {
            return r.json().catch(function () { return {ok: false, error: r.status + ""}; })
              .then(function (data) {
                if (!r.ok) { data.ok = false; }
                if (data.reauth || (data.csrf && r.status === 403)) {
                  say(T.session_ended, "warn");
                  waiting.push(send);
                  askPassword();
                  return;
                }
                resolve(data);
              });
          })
          .catch(function (e) { resolve({ok: false, error: String(e)}); });
      }
      send();
    });
  }

  // --- questions -----------------------------------------------------------------------
  function unitName(li) { return li.querySelector(".name").textContent; }

  function show() {
    items.forEach(function (li, i) { li.classList.toggle("current", i === current); });
    var li = items[current];
    if (li) {
      currentBox.textContent = fill(T.question_n, {n: li.dataset.n, total: allItems.length}) +
        T.colon + li.dataset.question;
      li.scrollIntoView({block: "nearest"});
    } else {
      currentBox.textContent = document.getElementById("closing").textContent;
      document.getElementById("closing").classList.add("now");
      say(T.all_done, "");
      var code = document.getElementById("code");
      var every = Array.prototype.every.call(allItems, function (x) {
        return x.dataset.rating !== "";
      });
      if (code && !code.value && every) { code.value = "1.1"; toggleFields(); }
    }
  }

  function save(li, key) {
    if (!open) { say(T.dial_first, "warn"); return; }
    if (!consented) { say(T.consent_first, "warn"); return; }
    li.dataset.rating = key;
    li.querySelector(".answer").textContent = key + " " + labels[key];
    li.classList.remove("saved", "failed");
    li.classList.add("pending");
    say(T.saving + " " + unitName(li) + " = " + key + " " + labels[key], "");
    post(box.dataset.answerUrl, {unit_id: Number(li.dataset.unit), key: key}).then(function (d) {
      li.classList.remove("pending");
      li.classList.toggle("saved", !!d.ok);
      li.classList.toggle("failed", !d.ok);
      if (d.ok) { say(T.saved + T.colon + unitName(li) + " = " + key + " " + labels[key], "ok"); }
      else { say(T.failed + T.colon + (d.error || ""), "warn"); }
    });
  }

  function isTextField(el) {
    if (!el) { return false; }
    if (el.isContentEditable || el.tagName === "TEXTAREA") { return true; }
    if (el.tagName !== "INPUT") { return false; }
    return ["checkbox", "radio", "button", "submit", "hidden"].indexOf(el.type) < 0;
  }

  // Capture phase: a digit never reaches the disposition list or another control.
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (!modal.hidden || isTextField(t)) { return; }
    if (ev.ctrlKey || ev.altKey || ev.metaKey) { return; }
    var li = items[current];
    if (/^[0-9]$/.test(ev.key)) {
      ev.preventDefault();
      ev.stopPropagation();
      if (!li) { say(T.all_done, ""); return; }
      if (validKeys.indexOf(ev.key) < 0) {
        say(fill(T.not_on_scale, {key: ev.key, keys: validKeys.join(" ")}), "warn");
        return;
      }
      save(li, ev.key);
      return;
    }
    var onControl = t && ["BUTTON", "SELECT", "A"].indexOf(t.tagName) >= 0;
    if (onControl) { return; }  // Enter presses the button, arrows move in the list
    if (ev.key === "Enter") {
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
  }, true);

  // --- the call --------------------------------------------------------------------------
  function dial(how) {
    post(box.dataset.dialUrl + "?how=" + how, {}).then(function (d) {
      if (d.ok) {
        open = true;
        callState.textContent = T.call_open;
        var back = document.getElementById("give-back");
        if (back) { back.hidden = true; }
        document.getElementById("consent").focus();
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
      if (d.ok) { consented = true; say("", ""); }
      callState.textContent = d.ok ? T.consent : (d.error || "");
      box.focus();
    });
  });

  // --- closing ---------------------------------------------------------------------------
  var code = document.getElementById("code");
  var appt = document.getElementById("appointment");
  var day = document.getElementById("appt-date");
  var timeSel = document.getElementById("appt-time");
  var slots = JSON.parse(appt.dataset.slots || "[]");
  function fillTimes() {
    var chosen = timeSel.value || appt.dataset.chosen;
    timeSel.innerHTML = "";
    slots.forEach(function (s) {
      if (s.day !== day.value) { return; }
      s.times.forEach(function (t) {
        var o = document.createElement("option");
        o.value = t; o.textContent = t; o.selected = t === chosen;
        timeSel.appendChild(o);
      });
    });
  }
  day.addEventListener("change", fillTimes);
  function toggleFields() {
    appt.hidden = code.value !== "2.211";
    document.getElementById("conversion-label").hidden =
      ["2.1111", "2.1121"].indexOf(code.value) < 0;
  }
  code.addEventListener("change", toggleFields);
  toggleFields();

  // Before the form goes, make sure the session is alive (else: password, then send).
  var form = document.getElementById("close-form");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    post(box.dataset.keepaliveUrl, {}).then(function () { form.submit(); });
  });

  setInterval(function () { post(box.dataset.keepaliveUrl, {}, {background: true}); }, 60000);
  show();
  if (!document.getElementById("form-error")) { box.focus(); }
})();
