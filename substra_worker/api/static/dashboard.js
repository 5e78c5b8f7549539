// The dashboard: polls GET /jobs with the API token kept in localStorage.
// Job data is only ever written with textContent, never parsed as HTML.
(function () {
  "use strict";

  var TOKEN_KEY = "substra-worker-api-token";
  var INTERVAL = 2000; // ms between two refreshes
  var LIMIT = 50;

  var rows = document.getElementById("job-rows");
  var statusLine = document.getElementById("status");
  var notice = document.getElementById("notice");
  var filterSelect = document.getElementById("state-filter");
  var shown = document.getElementById("shown");
  var tokenForm = document.getElementById("token-form");
  var tokenInput = document.getElementById("token-input");
  var timer = null;
  var rendered = {}; // job id -> {row, signature}

  var params = new URLSearchParams(window.location.search);
  if (params.has("token")) {
    // accepted once, then removed from the address bar and the history
    localStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
  }
  if (params.has("state")) {
    filterSelect.value = params.get("state");
  }
  history.replaceState(null, "", window.location.pathname + (params.toString() ? "?" + params : ""));

  function token() {
    return localStorage.getItem(TOKEN_KEY) || "";
  }

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.style.color = isError ? "var(--failed)" : "";
  }

  function setNotice(text, isError) {
    notice.textContent = text;
    notice.className = isError ? "error-notice" : "ok-notice";
  }

  function askToken(reason) {
    tokenForm.hidden = false;
    tokenInput.focus();
    setStatus(reason, true);
  }

  tokenForm.addEventListener("submit", function (event) {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    tokenInput.value = "";
    tokenForm.hidden = true;
    refresh();
  });

  document.getElementById("change-token").addEventListener("click", function () {
    tokenForm.hidden = !tokenForm.hidden;
    if (!tokenForm.hidden) tokenInput.focus();
  });

  function api(method, path) {
    return fetch(path, {
      method: method,
      cache: "no-store",
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.status === 401) {
          askToken("the API refused the token: enter it again");
        }
        if (!response.ok) {
          var error = new Error(body.message || "HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return body;
      });
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function ago(seconds) {
    if (!seconds) return "";
    var d = Math.max(0, Date.now() / 1000 - seconds);
    if (d < 60) return Math.round(d) + "s ago";
    if (d < 3600) return Math.round(d / 60) + "m ago";
    if (d < 86400) return Math.round(d / 3600) + "h ago";
    return Math.round(d / 86400) + "d ago";
  }

  function short(text, n) {
    text = String(text);
    return text.length > n ? text.slice(0, n) + "…" : text;
  }

  function progressCell(job) {
    var td = el("td", "progress");
    var p = job.progress;
    if (!p || !p.total) {
      if (p && p.status) td.appendChild(el("span", "bar-label", p.status));
      return td;
    }
    var done = Number(p.done) || 0;
    var total = Number(p.total) || 0;
    var pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
    var bar = el("div", "bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(pct));
    var fill = el("div");
    fill.style.width = pct + "%";
    bar.appendChild(fill);
    td.appendChild(bar);
    td.appendChild(el("span", "bar-label", done + "/" + total + (p.status ? " " + p.status : "")));
    return td;
  }

  function resultText(job) {
    var r = job.result;
    if (!r) return "";
    if (r.key) return r.key;
    if (r.count !== undefined && r.count !== null) return r.count + " samples";
    return "";
  }

  function errorText(job) {
    var e = job.error;
    if (!e) return "";
    return (e.type ? e.type + ": " : "") + (e.message || "");
  }

  function action(label, name, job) {
    var button = el("button", name, label);
    button.type = "button";
    button.dataset.action = name;
    button.dataset.jobId = job.id;
    return button;
  }

  function buildRow(job) {
    var tr = el("tr");
    tr.dataset.jobId = job.id;
    tr.dataset.state = job.state;
    var id = el("td", "mono", job.id.slice(0, 8));
    id.title = job.id;
    tr.appendChild(id);
    tr.appendChild(el("td", "operation", job.operation));
    // the end of a path says more than its start
    var shownSource = job.source && job.source.length > 28 ? "…" + job.source.slice(-27) : job.source;
    var source = el("td", "source", shownSource || job.producer || "");
    source.title = job.source ? job.source + " (producer " + job.producer + ")" : "producer";
    tr.appendChild(source);
    var state = el("td", "state-cell");
    state.appendChild(el("span", "state s-" + job.state, job.state));
    tr.appendChild(state);
    tr.appendChild(el("td", "num attempts", job.attempt_count));
    tr.appendChild(progressCell(job));
    var result = resultText(job);
    var resultCell = el("td", "mono result", short(result, 12));
    resultCell.title = result;
    tr.appendChild(resultCell);
    var error = errorText(job);
    var errorCell = el("td", "error", short(error, 160));
    errorCell.title = error;
    tr.appendChild(errorCell);
    var updated = el("td", "updated muted", ago(job.updated_at));
    updated.dataset.at = job.updated_at || "";
    tr.appendChild(updated);
    var actions = el("td", "actions");
    if (job.state === "failed") actions.appendChild(action("Retry", "retry", job));
    if (job.state === "queued" || job.state === "waiting") {
      actions.appendChild(action("Cancel", "cancel", job));
    }
    tr.appendChild(actions);
    return tr;
  }

  function renderCounts(counts) {
    var chips = document.querySelectorAll("#counts .chip");
    for (var i = 0; i < chips.length; i++) {
      var chip = chips[i];
      chip.querySelector(".n").textContent = String(counts[chip.dataset.state] || 0);
      chip.classList.toggle("active", chip.dataset.state === filterSelect.value);
    }
  }

  function renderJobs(jobs) {
    var keep = {};
    var empty = rows.querySelector("tr.empty");
    if (jobs.length === 0) {
      rows.textContent = "";
      rows.appendChild(empty || (function () {
        var tr = el("tr", "empty");
        var td = el("td", null, "no jobs");
        td.colSpan = 10;
        tr.appendChild(td);
        return tr;
      })());
      rendered = {};
      return;
    }
    if (empty) empty.remove();
    jobs.forEach(function (job) {
      // rows whose job did not change are kept, so a button under the pointer stays
      var signature = JSON.stringify(job);
      var entry = rendered[job.id];
      if (!entry || entry.signature !== signature) {
        var row = buildRow(job);
        if (entry) entry.row.replaceWith(row);
        entry = { row: row, signature: signature };
      }
      keep[job.id] = entry;
      rows.appendChild(entry.row); // moves it into order
    });
    Object.keys(rendered).forEach(function (id) {
      if (!keep[id]) rendered[id].row.remove();
    });
    rendered = keep;
    var cells = rows.querySelectorAll("td.updated");
    for (var i = 0; i < cells.length; i++) {
      cells[i].textContent = ago(Number(cells[i].dataset.at));
    }
  }

  function refresh() {
    clearTimeout(timer);
    if (!token()) {
      askToken("enter the API token to see the jobs");
      return Promise.resolve();
    }
    var query = "jobs?limit=" + LIMIT + (filterSelect.value ? "&state=" + filterSelect.value : "");
    return api("GET", query)
      .then(function (page) {
        renderCounts(page.counts || {});
        renderJobs(page.jobs || []);
        shown.textContent = page.jobs.length + " job(s) shown" + (page.next_cursor ? " (most recent)" : "");
        setStatus("updated " + new Date().toLocaleTimeString(), false);
      })
      .catch(function (error) {
        if (error.status !== 401) setStatus("cannot reach the API: " + error.message, true);
      })
      .then(function () {
        timer = setTimeout(refresh, INTERVAL);
      });
  }

  rows.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    var path = "jobs/" + encodeURIComponent(button.dataset.jobId) + "/" + button.dataset.action;
    api("POST", path)
      .then(function (job) {
        setNotice(button.dataset.action + ": job " + job.id.slice(0, 8) + " is " + job.state, false);
      })
      .catch(function (error) {
        button.disabled = false;
        setNotice(button.dataset.action + " refused: " + error.message, true);
      })
      .then(refresh);
  });

  filterSelect.addEventListener("change", function () {
    rendered = {};
    rows.textContent = "";
    refresh();
  });

  document.getElementById("counts").addEventListener("click", function (event) {
    var chip = event.target.closest(".chip");
    if (!chip) return;
    filterSelect.value = filterSelect.value === chip.dataset.state ? "" : chip.dataset.state;
    filterSelect.dispatchEvent(new Event("change"));
  });

  refresh();
})();
