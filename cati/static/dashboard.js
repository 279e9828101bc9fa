// The supervisor dashboard: fetches the field statistics as JSON every few seconds.
(function () {
  "use strict";
  var D = window.DASHBOARD, T = D.text;
  function esc(v) {
    return String(v === null || v === undefined ? "—" : v).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  }
  function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1) + "%"; }
  function table(id, heads, rows) {
    var el = document.getElementById(id);
    if (!rows.length) { el.innerHTML = "<p>" + esc(T.none) + "</p>"; return; }
    var h = "<table id='" + id + "-table'><thead><tr>" + heads.map(function (x) {
      return "<th>" + esc(x) + "</th>"; }).join("") + "</tr></thead><tbody>";
    rows.forEach(function (r) {
      h += "<tr>" + r.map(function (x) { return "<td>" + esc(x) + "</td>"; }).join("") + "</tr>";
    });
    el.innerHTML = h + "</tbody></table>";
  }
  function label(o) { return D.lang === "en" ? o.label_en : o.label_zh; }
  var RATES = ["RR1", "RR2", "RR3", "RR4", "RR5", "RR6", "COOP1", "COOP2", "COOP3", "COOP4",
               "REF1", "REF2", "REF3", "CON1", "CON2", "CON3"];
  function render(d) {
    document.getElementById("totals").innerHTML =
      "<span>" + esc(T.released) + ": <b id='n-released'>" + d.totals.released + "</b></span> " +
      "<span>" + esc(T.final) + ": <b id='n-final'>" + d.totals.final + "</b></span> " +
      "<span>" + esc(T.completed) + ": <b id='n-completed'>" + d.totals.completed + "</b></span>";
    table("strata", [T.stratum, T.target, T.released, T.in_progress, T.completed, T.share],
      d.strata.map(function (s) {
        return [label(s), s.target, s.released, s.in_progress, s.completed, pct(s.share)];
      }));
    table("units", [T.unit, T.target, T.released, T.rated, T.completed, T.share],
      d.units.map(function (u) {
        return [label(u), u.target, u.released, u.rated, u.completed, pct(u.share)];
      }));
    table("dispositions", [T.code, T.label, T.final_col, T.cases],
      d.dispositions.map(function (x) {
        return [x.code, label(x), x.final ? T.yes : T.no, x.cases]; }));
    var rows = [[T.overall, "", d.rates.overall]];
    Object.keys(d.rates.mode).forEach(function (k) { rows.push([T.mode, k.toUpperCase(), d.rates.mode[k]]); });
    Object.keys(d.rates.stratum).forEach(function (k) { rows.push([T.stratum, k, d.rates.stratum[k]]); });
    Object.keys(d.rates.interviewer).forEach(function (k) { rows.push([T.interviewer, k, d.rates.interviewer[k]]); });
    table("rates", [T.group, "", T.cases, "e"].concat(RATES), rows.map(function (r) {
      var x = r[2];
      return [r[0], r[1], x.cases, x.e === null ? null : x.e.toFixed(3)].concat(
        RATES.map(function (n) { return pct(x[n]); }));
    }));
    var o = d.rates.overall;
    document.getElementById("e-note").textContent = T.e_note
      .replace("{e}", o.e === null ? "—" : o.e.toFixed(3))
      .replace("{basis}", o.e_basis === "default" ? T.basis_default : T.basis_given);
    table("productivity", [T.interviewer, T.attempts, T.hours, T.per_hour, T.completes, T.avg_len],
      d.productivity.map(function (p) {
        return [p.interviewer, p.attempts, p.hours, p.attempts_per_hour, p.completes,
                p.avg_interview_seconds]; }));
    var ip = d.in_progress;
    table("in-progress", [T.mode, T.case, T.interviewer, T.seconds],
      ip.calls.map(function (c) { return [c.channel.toUpperCase(), c.case_id, c.interviewer, c.seconds]; }));
    document.getElementById("in-progress").insertAdjacentHTML("afterbegin",
      "<p>" + esc(T.holds) + ": <span id='holds'>" + Object.keys(ip.holds).map(function (k) {
        return k.toUpperCase() + " " + ip.holds[k]; }).join(", ") + "</span></p>");
    document.getElementById("updated").textContent = T.updated + " " + new Date().toLocaleTimeString();
  }
  function refresh() {
    fetch(D.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); }).then(render)
      .catch(function () {}).then(function () { setTimeout(refresh, D.refresh); });
  }
  refresh();
})();
