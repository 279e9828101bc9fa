// The supervisor dashboard: fetches the field statistics as JSON every few seconds.
// One screen: compact tables in boxes; the unit table is collapsed and paginated; strata,
// codes and interviewers link to the case lists (drill-down).
(function () {
  "use strict";
  var D = window.DASHBOARD, T = D.text, PAGE = 15, unitPage = 1, last = null;
  function esc(v) {
    return String(v === null || v === undefined ? "—" : v).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  }
  function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1) + "%"; }
  function link(params, text) {
    var q = Object.keys(params).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]); }).join("&");
    return {html: "<a href='" + esc(D.cases + "?" + q) + "'>" + esc(text) + "</a>"};
  }
  function cell(x) { return x && x.html !== undefined ? x.html : esc(x); }
  function table(id, heads, rows, el) {
    el = el || document.getElementById(id);
    if (!rows.length) { el.innerHTML = "<p>" + esc(T.none) + "</p>"; return; }
    var h = "<table id='" + id + "-table'><thead><tr>" + heads.map(function (x) {
      return "<th>" + esc(x) + "</th>"; }).join("") + "</tr></thead><tbody>";
    rows.forEach(function (r) {
      h += "<tr>" + r.map(function (x) { return "<td>" + cell(x) + "</td>"; }).join("") + "</tr>";
    });
    el.innerHTML = h + "</tbody></table>";
  }
  function label(o) { return D.lang === "en" ? o.label_en : o.label_zh; }
  var SHORT = ["RR1", "RR3", "COOP1", "REF1", "CON1"];
  var RATES = ["RR1", "RR2", "RR3", "RR4", "RR5", "RR6", "COOP1", "COOP2", "COOP3", "COOP4",
               "REF1", "REF2", "REF3", "CON1", "CON2", "CON3"];
  function rateRows(d, withStrata) {
    var rows = [[T.overall, "", d.rates.overall]];
    Object.keys(d.rates.mode).forEach(function (k) { rows.push([T.mode, k.toUpperCase(), d.rates.mode[k]]); });
    if (withStrata) {
      Object.keys(d.rates.stratum).forEach(function (k) { rows.push([T.stratum, k, d.rates.stratum[k]]); });
      Object.keys(d.rates.interviewer).forEach(function (k) { rows.push([T.interviewer, k, d.rates.interviewer[k]]); });
    }
    return rows;
  }
  function renderUnits(d) {
    var f = (document.getElementById("units-filter").value || "").trim().toLowerCase();
    var units = d.units.filter(function (u) {
      return !f || (label(u) + " " + u.unit + " " + u.track).toLowerCase().indexOf(f) >= 0; });
    var pages = Math.max(1, Math.ceil(units.length / PAGE));
    unitPage = Math.min(unitPage, pages);
    document.getElementById("units-count").textContent = "(" + d.units.length + ")";
    var tracks = {};
    (d.tracks || []).forEach(function (t) { tracks[t.track] = label(t); });
    table("units", [T.unit, T.track, T.target, T.rated, T.completed, T.share],
      units.slice((unitPage - 1) * PAGE, unitPage * PAGE).map(function (u) {
        return [label(u), tracks[u.track] || u.track, u.target, u.rated, u.completed,
                pct(u.share)]; }));
    var p = document.getElementById("units-pager");
    p.innerHTML = pages < 2 ? "" :
      "<button type='button' id='units-prev'" + (unitPage < 2 ? " disabled" : "") + ">‹ " + esc(T.prev) + "</button> " +
      "<span id='units-page'>" + esc(T.page.replace("{p}", unitPage).replace("{n}", pages)) + "</span> " +
      "<button type='button' id='units-next'" + (unitPage >= pages ? " disabled" : "") + ">" + esc(T.next) + " ›</button>";
  }
  function render(d) {
    last = d;
    document.getElementById("totals").innerHTML =
      "<span>" + esc(T.released) + ": <b id='n-released'>" + d.totals.released + "</b></span> " +
      "<span>" + esc(T.final) + ": <b id='n-final'>" + d.totals.final + "</b></span> " +
      "<span>" + esc(T.completed) + ": <b id='n-completed'>" + d.totals.completed + "</b></span>";
    table("strata", [T.stratum, T.target, T.released, T.in_progress, T.completed, T.share],
      d.strata.map(function (s) {
        return [link({stratum: s.stratum}, label(s)), s.target, s.released, s.in_progress,
                s.completed, pct(s.share)];
      }));
    table("tracks", [T.track, T.units, T.target, T.rated, T.completed, T.share, T.lowest],
      (d.tracks || []).map(function (t) {
        return [label(t), t.units, t.target, t.rated, t.completed, pct(t.share),
                t.lowest_unit + " " + pct(t.lowest_share)]; }));
    renderUnits(d);
    table("dispositions", [T.code, T.label, T.final_col, T.counts_as, T.cases],
      d.dispositions.map(function (x) {
        return [link({code: x.code}, x.code), label(x), x.final ? T.yes : T.no,
                x.counts_as === x.code ? "" : x.counts_as, x.cases]; }));
    table("rates", [T.group, "", T.cases].concat(SHORT), rateRows(d, false).map(function (r) {
      return [r[0], r[1], r[2].cases].concat(SHORT.map(function (n) { return pct(r[2][n]); }));
    }));
    table("rates-all", [T.group, "", T.cases, "e"].concat(RATES), rateRows(d, true).map(function (r) {
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
        return [link({interviewer: p.interviewer_id}, p.interviewer), p.attempts, p.hours,
                p.attempts_per_hour, p.completes, p.avg_interview_seconds]; }));
    var ip = d.in_progress;
    table("in-progress", [T.mode, T.case, T.interviewer, T.seconds],
      ip.calls.map(function (c) { return [c.channel.toUpperCase(), c.case, c.interviewer, c.seconds]; }));
    document.getElementById("in-progress").insertAdjacentHTML("afterbegin",
      "<p>" + esc(T.holds) + ": <span id='holds'>" + Object.keys(ip.holds).map(function (k) {
        return k.toUpperCase() + " " + ip.holds[k]; }).join(", ") + "</span></p>");
    document.getElementById("updated").textContent = T.updated + " " + new Date().toLocaleTimeString();
  }
  document.getElementById("units-filter").addEventListener("input", function () {
    unitPage = 1; if (last) { renderUnits(last); } });
  document.getElementById("units-pager").addEventListener("click", function (ev) {
    if (!last || ev.target.tagName !== "BUTTON") { return; }
    unitPage += ev.target.id === "units-next" ? 1 : -1;
    renderUnits(last);
  });
  function refresh() {
    fetch(D.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); }).then(render)
      .catch(function () {}).then(function () { setTimeout(refresh, D.refresh); });
  }
  refresh();
})();
