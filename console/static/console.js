/* lpg-sync support console: login, tokens in memory only, htmx wiring, and the three pages that need
   script (queue-file replay, chain verification, live feed). No token is ever written to storage, a
   cookie or a URL: reloading the page means logging in again. */
(function () {
  "use strict";

  var PREFIX = "/console";
  var API = "/api/v1";
  var session = { access: null, refresh: null, user: null, timer: null };

  function $(id) { return document.getElementById(id); }

  function show(el, visible) { if (el) { el.hidden = !visible; } }

  function alertMessage(text) {
    var box = $("alert");
    box.textContent = text || "";
    show(box, !!text);
  }

  function authHeaders(extra) {
    var headers = extra || {};
    if (session.access) { headers.Authorization = "Bearer " + session.access; }
    return headers;
  }

  function errorText(status, body) {
    try {
      var parsed = JSON.parse(body);
      if (parsed && parsed.error) { return parsed.error.message + " (" + parsed.error.code + ")"; }
    } catch (e) { /* not JSON */ }
    return "HTTP " + status;
  }

  function postJson(path, body, withAuth) {
    return fetch(path, {
      method: "POST",
      headers: withAuth ? authHeaders({ "Content-Type": "application/json" }) : { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store"
    });
  }

  // -- session ------------------------------------------------------------------------------------------

  function keep(pair) {
    session.access = pair.access;
    session.refresh = pair.refresh;
    session.user = pair.user;
    clearTimeout(session.timer);
    var wait = Math.max(5, pair.access_expires_in * 0.8) * 1000;
    session.timer = setTimeout(refresh, wait);
  }

  function forget() {
    clearTimeout(session.timer);
    stopFeed();
    session.access = session.refresh = session.user = null;
  }

  var refreshing = null;
  function refresh() {
    if (!session.refresh) { return Promise.resolve(false); }
    if (refreshing) { return refreshing; }
    refreshing = postJson(API + "/auth/refresh/", { refresh: session.refresh }, false)
      .then(function (response) {
        if (!response.ok) { return false; }
        return response.json().then(function (pair) { keep(pair); return true; });
      })
      .catch(function () { return false; })
      .then(function (ok) { refreshing = null; return ok; });
    return refreshing;
  }

  function showLogin(message) {
    forget();
    show($("nav"), false);
    show($("logout"), false);
    show($("who"), false);
    alertMessage("");
    $("main").textContent = "";
    show($("main"), false);
    show($("login"), true);
    $("login-message").textContent = message || "";
    $("username").focus();
  }

  function enterConsole() {
    show($("login"), false);
    show($("main"), true);
    show($("nav"), true);
    show($("logout"), true);
    var who = $("who");
    who.textContent = "Logged in as " + session.user.username;
    show(who, true);
    var wanted = (window.location.hash || "#devices").slice(1);
    var link = document.querySelector('#nav a[href="#' + wanted + '"]') || document.querySelector("#nav a");
    openPage(link);
  }

  function login(event) {
    event.preventDefault();
    var message = $("login-message");
    message.textContent = "Logging in…";
    var body = { username: $("username").value, password: $("password").value };
    postJson(API + "/auth/login/", body, false).then(function (response) {
      return response.text().then(function (text) {
        $("password").value = "";
        if (!response.ok) { message.textContent = errorText(response.status, text); return; }
        var pair = JSON.parse(text);
        if (pair.user.role !== "admin") {
          // Not for drivers: end the session at once, keep nothing.
          postJson(API + "/auth/logout/", { refresh: pair.refresh }, false).catch(function () { return null; });
          showLogin("This console is for administrators only. Your account cannot use it.");
          return;
        }
        keep(pair);
        message.textContent = "";
        enterConsole();
      });
    }).catch(function () { message.textContent = "The server does not answer."; });
  }

  function logout() {
    var token = session.refresh;
    if (token) { postJson(API + "/auth/logout/", { refresh: token }, false).catch(function () { return null; }); }
    window.location.hash = "";
    showLogin("Logged out.");
  }

  // -- navigation ---------------------------------------------------------------------------------------

  function openPage(link) {
    if (!link) { return; }
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      if (a === link) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
    });
    stopFeed();
    window.location.hash = link.getAttribute("href");
    htmx.ajax("GET", link.getAttribute("data-page"), { target: "#main", swap: "innerHTML" });
  }

  // -- htmx wiring --------------------------------------------------------------------------------------

  htmx.defineExtension("console-json", {
    onEvent: function (name, evt) {
      if (name === "htmx:configRequest") { evt.detail.headers["Content-Type"] = "application/json"; }
    },
    encodeParameters: function (xhr, parameters, elt) {
      xhr.overrideMimeType("text/html");
      var object = {};
      parameters.forEach(function (value, key) {
        if (key === "ids") {
          (object.ids = object.ids || []).push(value);
        } else {
          object[key] = value;
        }
      });
      return JSON.stringify(object);
    }
  });

  document.addEventListener("htmx:configRequest", function (evt) {
    if (session.access) { evt.detail.headers.Authorization = "Bearer " + session.access; }
  });

  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr.status < 400) { alertMessage(""); return; }
    evt.detail.shouldSwap = false;
    evt.detail.isError = false;
    var config = evt.detail.requestConfig;
    var now = Date.now();
    if (xhr.status === 401 && session.refresh && now - (session.retriedAt || 0) > 5000) {
      session.retriedAt = now;  // one refresh-and-retry at a time: a second 401 right after means logged out
      refresh().then(function (ok) {
        if (!ok) { showLogin("Your session ended. Log in again."); return; }
        htmx.ajax(config.verb.toUpperCase(), config.path, {
          source: config.elt, target: config.target
        });
      });
      return;
    }
    if (xhr.status === 401) { showLogin("Your session ended. Log in again."); return; }
    if (xhr.status === 403) { showLogin("This console is for administrators only."); return; }
    alertMessage(errorText(xhr.status, xhr.responseText));
  });

  document.addEventListener("htmx:sendError", function () { alertMessage("The server does not answer."); });

  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target && evt.detail.target.id === "main") {
      var heading = document.querySelector("#main h2");
      if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
      if ($("feed")) { startFeed(); }
    }
  });

  // -- the inbox: select all of a device's ------------------------------------------------------------------

  function selectDevice(checked) {
    var device = $("inbox-device").value;
    Array.prototype.forEach.call(document.querySelectorAll('#inbox-form input[name="ids"]'), function (box) {
      if (box.getAttribute("data-device") === device) { box.checked = checked; }
      else if (checked) { box.checked = false; }
    });
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    if (target.id === "select-device-all") { selectDevice(target.checked); }
    if (target.id === "inbox-device") { $("select-device-all").checked = false; selectDevice(false); }
    if (target.name === "ids" && target.checked) {
      $("inbox-device").value = target.getAttribute("data-device");
    }
    if (target.id === "feed-entity") { stopFeed(); clearFeed(); startFeed(); }
  });

  // -- replay a queue file ----------------------------------------------------------------------------------

  function replayFile(apply) {
    var device = $("replay-device").value.trim();
    var file = $("replay-file").files[0];
    var status = $("replay-status");
    var progress = $("replay-progress");
    if (!device || !file) { status.textContent = "Give the device id and choose a file."; return; }
    $("replay-dry").disabled = $("replay-apply").disabled = true;
    status.textContent = "Reading " + file.name + "…";
    progress.value = 0;
    var counts = {};
    var refusals = [];
    file.arrayBuffer().then(function (bytes) {
      var type = /\.(msgpack|mpk|bin)$/i.test(file.name) ? "application/msgpack" : "application/json";
      return authedFetch(PREFIX + "/f/replay/decode", { method: "POST", headers: { "Content-Type": type }, body: bytes });
    }).then(function (decoded) {
      var changes = decoded.changes;
      var size = decoded.batch;
      progress.max = Math.max(changes.length, 1);
      var done = 0;
      function next() {
        if (done >= changes.length) { return Promise.resolve(); }
        var chunk = changes.slice(done, done + size);
        var body = JSON.stringify({ device_id: device, changes: chunk, dry_run: !apply });
        return authedFetch(API + "/sync/replay", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: body
        }).then(function (answer) {
          answer.results.forEach(function (r) {
            var key = r.status === "rejected" ? (apply ? "rejected: " : "would be refused: ") + r.error.code
              : (r.status === "applied" && !apply ? "would apply" : r.status);
            counts[key] = (counts[key] || 0) + 1;
            if (r.status === "rejected") { refusals.push(r); }
          });
          done += chunk.length;
          progress.value = done;
          status.textContent = (apply ? "Applying: " : "Dry run: ") + done + " of " + changes.length + " changes";
          return next();
        });
      }
      return next().then(function () {
        status.textContent = (apply ? "Applied: " : "Dry run, nothing written: ") + changes.length + " changes";
        summary(counts, refusals, apply);
      });
    }).catch(function (error) {
      status.textContent = "Stopped: " + error.message;
      summary(counts, refusals, apply);
    }).then(function () {
      $("replay-dry").disabled = $("replay-apply").disabled = false;
    });
  }

  function summary(counts, refusals, apply) {
    var table = $("replay-summary");
    var body = table.querySelector("tbody");
    body.textContent = "";
    Object.keys(counts).sort().forEach(function (key) { body.appendChild(row([key, String(counts[key])])); });
    $("replay-caption").textContent = apply ? "Replay summary" : "Dry run: nothing was written";
    show(table, true);
    var list = $("replay-refusals");
    var listBody = list.querySelector("tbody");
    listBody.textContent = "";
    refusals.slice(0, 500).forEach(function (r) {
      listBody.appendChild(row([r.client_temp_id, r.error.code, r.error.message]));
    });
    show(list, refusals.length > 0);
  }

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    return tr;
  }

  // A fetch with the bearer token; on 401 the token is refreshed once and the call repeated.
  function authedFetch(path, options, retried) {
    var opts = Object.assign({ credentials: "omit", cache: "no-store" }, options);
    opts.headers = authHeaders(Object.assign({}, options.headers || {}));
    return fetch(path, opts).then(function (response) {
      if (response.status === 401 && !retried) {
        return refresh().then(function (ok) {
          if (!ok) { showLogin("Your session ended. Log in again."); throw new Error("logged out"); }
          return authedFetch(path, options, true);
        });
      }
      return response.text().then(function (text) {
        if (!response.ok) { throw new Error(errorText(response.status, text)); }
        return JSON.parse(text);
      });
    });
  }

  // -- chain verification -----------------------------------------------------------------------------------

  function verifyChain() {
    var button = $("verify-button");
    var progress = $("verify-progress");
    var status = $("verify-status");
    button.disabled = true;
    progress.value = 0;
    status.textContent = "Verifying…";
    function step(cursor) {
      return authedFetch(PREFIX + "/f/audit/verify", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ cursor: cursor })
      }).then(function (answer) {
        progress.max = Math.max(answer.total, 1);
        progress.value = answer.cursor.checked;
        if (!answer.verdict) {
          status.textContent = "Checked " + answer.cursor.checked + " of " + answer.total + " entries…";
          return step(answer.cursor);
        }
        var v = answer.verdict;
        if (v.ok) {
          progress.value = progress.max;
          status.textContent = "The chain is intact: " + v.checked + " entries verified.";
        } else {
          status.textContent = "The chain is BROKEN at entry " + v.first_broken.id + " (" + v.first_broken.reason +
            "); " + v.checked + " entries before it are intact.";
        }
        return null;
      });
    }
    step(null).catch(function (error) { status.textContent = "Stopped: " + error.message; })
      .then(function () { button.disabled = false; });
  }

  // -- the live feed: the continuous change feed, read as a stream ----------------------------------------

  var feed = { controller: null, since: 0, paused: false };

  function stopFeed() {
    if (feed.controller) { feed.controller.abort(); feed.controller = null; }
  }

  function clearFeed() {
    var body = document.querySelector("#feed-table tbody");
    if (body) { body.textContent = ""; }
  }

  function startFeed() {
    var section = $("feed");
    if (!section || feed.controller || feed.paused || !session.access) { return; }
    if (!section.getAttribute("data-started")) {
      feed.since = parseInt(section.getAttribute("data-since"), 10) || 0;
      section.setAttribute("data-started", "1");
    }
    var entity = $("feed-entity").value;
    var url = API + "/sync/changes?feed=continuous&heartbeat=10000&timeout=55000&since=" + feed.since +
      (entity ? "&entities=" + encodeURIComponent(entity) : "");
    var controller = new AbortController();
    feed.controller = controller;
    $("feed-status").textContent = "Live" + (entity ? " (" + entity + " only)" : "") + ", from seq " + feed.since;
    fetch(url, { headers: authHeaders({ Accept: "application/json" }), signal: controller.signal, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          return refresh().then(function (ok) { if (!ok) { throw new Error("logged out"); } });
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { return; }
            buffer += decoder.decode(chunk.value, { stream: true });
            var lines = buffer.split("\n");
            buffer = lines.pop();
            lines.forEach(function (line) { if (line.trim()) { feedLine(JSON.parse(line)); } });
            return pump();
          });
        }
        return pump();
      })
      .then(function () {
        if (feed.controller === controller) { feed.controller = null; startFeed(); }
      })
      .catch(function (error) {
        if (feed.controller !== controller) { return; }
        feed.controller = null;
        var status = $("feed-status");
        if (status) { status.textContent = "Disconnected (" + error.message + "); retrying in 5 s"; }
        setTimeout(startFeed, 5000);
      });
  }

  function feedLine(item) {
    if (item.last_seq !== undefined && item.seq === undefined) { feed.since = item.last_seq; return; }
    if (item.seq === undefined) { return; }
    feed.since = Math.max(feed.since, item.seq);
    var body = document.querySelector("#feed-table tbody");
    if (!body) { return; }
    var doc = item.doc || {};
    var summaryText = doc.number || doc.name || doc.plate || doc.code || doc.status || "";
    var tr = row([String(item.seq), item.entity, String(item.id), item.deleted ? "deleted" : "v" + item.version,
      String(summaryText)]);
    tr.className = "fresh";
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > 200) { body.removeChild(body.lastChild); }
    $("feed-status").textContent = "Live, last seq " + feed.since;
  }

  // -- events -----------------------------------------------------------------------------------------------

  document.addEventListener("submit", function (evt) {
    if (evt.target.id === "login-form") { login(evt); }
    if (evt.target.id === "replay-form") {
      evt.preventDefault();
      replayFile(evt.submitter && evt.submitter.value === "apply");
    }
  });

  document.addEventListener("click", function (evt) {
    var target = evt.target;
    if (target.closest) {
      var link = target.closest("#nav a");
      if (link) { evt.preventDefault(); openPage(link); return; }
    }
    if (target.id === "logout") { logout(); }
    if (target.id === "verify-button") { verifyChain(); }
    if (target.id === "feed-pause") {
      feed.paused = !feed.paused;
      target.textContent = feed.paused ? "Resume" : "Pause";
      if (feed.paused) { stopFeed(); $("feed-status").textContent = "Paused at seq " + feed.since; }
      else { startFeed(); }
    }
  });

  document.addEventListener("DOMContentLoaded", function () { $("username").focus(); });
}());
