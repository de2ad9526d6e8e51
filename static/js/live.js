/* Live pages without a build step: poll the page's server-rendered fragment and swap its parts.
 *
 *   <div hidden data-live-url="/live/dashboard/" data-live-every="2000"></div>
 *   <div data-live-id="app-shop-row">...</div>   replaced by the same id from the fragment
 *
 * The fragment is rendered (and escaped) by the server with the same templates as the page.
 * Polls are cheap when nothing changed (deploys/live.py): each sends back the last answer's
 * ETag (If-None-Match) and gets a 304 with no body; the dashboard also sends the last
 * answer's X-Live-Cursor (?since=) and gets only the rows that changed. Every 2 s while the
 * tab is seen, every 30 s while it is hidden, at once when it is seen again; a deploy's page
 * stops once the deploy has ended (X-Live-Final). How long the holder has run ticks here,
 * between polls (data-elapsed, the words of lib/durations.py).
 * Also here: buttons that post without a reload (form.js-action), times in the viewer's time
 * zone (<time datetime>), branch suggestions for the queue form, and telling the owner when
 * their deploy starts or ends (in the page, and as a browser notification if allowed).
 * Without JavaScript every page still reads, and every button still posts.
 */
(function () {
  "use strict";

  var HIDDEN_EVERY_MS = 30000;
  // The final states come from deploys/states.py, by way of <body data-final-states>.
  var FINAL = (document.body.getAttribute("data-final-states") || "").split(" ");
  var LABELS = {};

  // ------------------------------------------------------------------ times, local

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function localTimes(root) {
    Array.prototype.forEach.call(root.querySelectorAll("time[datetime]"), function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) {
        return;
      }
      var format = el.getAttribute("data-format") || "datetime";
      var time = pad(when.getHours()) + ":" + pad(when.getMinutes());
      var text;
      if (format === "time") {
        text = time;
      } else if (format === "time-seconds") {
        text = time + ":" + pad(when.getSeconds());
      } else {
        text = when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate()) +
          " " + time;
      }
      el.textContent = text;
      el.title = el.getAttribute("datetime");
      el.setAttribute("data-local", "1");
    });
  }

  // ------------------------------------------------------------------ durations, ticking

  // lib/durations.py's rule: the two largest units from the first not zero, the second left
  // out when zero, whatever is smaller dropped, never rounded up.
  var UNITS = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];

  function inWords(seconds) {
    var left = Math.max(Math.floor(seconds), 0);
    for (var i = 0; i < UNITS.length - 1; i++) {
      if (left >= UNITS[i][0]) {
        var big = Math.floor(left / UNITS[i][0]);
        var small = Math.floor((left % UNITS[i][0]) / UNITS[i + 1][0]);
        return big + " " + UNITS[i][1] + (small ? " " + small + " " + UNITS[i + 1][1] : "");
      }
    }
    return left + " s";
  }

  // The server says how many seconds it counted when it rendered; counting on from when the
  // page got it keeps the viewer's clock, right or wrong, out of it.
  function seenElapsed(root) {
    var now = Date.now();
    Array.prototype.forEach.call(root.querySelectorAll("[data-elapsed]"), function (el) {
      el.fcSeenAt = now;
    });
  }

  function tickElapsed() {
    var now = Date.now();
    Array.prototype.forEach.call(document.querySelectorAll("[data-elapsed]"), function (el) {
      var counted = parseInt(el.getAttribute("data-elapsed"), 10);
      if (!isNaN(counted) && el.fcSeenAt) {
        el.textContent = inWords(counted + (now - el.fcSeenAt) / 1000);
      }
    });
  }

  // ------------------------------------------------------------------ flash messages

  function flash(level, text) {
    var box = document.getElementById("flash");
    if (!box) {
      return;
    }
    var line = document.createElement("p");
    line.className = "flash " + level;
    line.textContent = text;
    box.textContent = "";
    box.appendChild(line);
  }

  // ------------------------------------------------------------------ owners told

  function myStates(root) {
    var states = {};
    Array.prototype.forEach.call(root.querySelectorAll("[data-mine][data-deploy-id]"), function (el) {
      states[el.getAttribute("data-deploy-id")] = el.getAttribute("data-state");
      LABELS[el.getAttribute("data-deploy-id")] = (el.querySelector(".state") || el).textContent;
    });
    return states;
  }

  function tell(text) {
    flash("info", text);
    if (window.Notification && Notification.permission === "granted") {
      try {
        new Notification("Fat Controller", { body: text });
      } catch (e) {
        // Some browsers only notify from a service worker: the page says it anyway.
      }
    }
  }

  function compareMine(before, after) {
    Object.keys(after).forEach(function (id) {
      var was = before[id];
      var now = after[id];
      if (!was || was === now) {
        return;
      }
      if (was === "queued" && now !== "queued" && FINAL.indexOf(now) < 0) {
        tell("Your turn: deploy #" + id + " has taken the merge slot.");
      } else if (FINAL.indexOf(now) >= 0 && FINAL.indexOf(was) < 0) {
        tell("Deploy #" + id + " ended: " + (LABELS[id] || now).trim() + ".");
      }
    });
  }

  function offerNotifications() {
    var box = document.getElementById("notify-offer");
    if (!box || !window.Notification || Notification.permission !== "default") {
      return;
    }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = "Tell me in the browser when my deploys start and end";
    button.addEventListener("click", function () {
      Notification.requestPermission().then(function () {
        box.textContent = "";
      });
    });
    box.appendChild(button);
  }

  // ------------------------------------------------------------------ the fragment

  var marker = null;
  var busy = false;
  var timer = null;
  var etag = null; // the last answer's, sent back as If-None-Match
  var since = null; // the dashboard's last X-Live-Cursor, sent back as ?since=
  var ended = false; // the deploy has ended (X-Live-Final): nothing more will change

  function swap(html) {
    var fragment = new DOMParser().parseFromString(html, "text/html");
    var before = myStates(document);
    var builds = document.getElementById("builds");
    if (builds) {
      // A new attempt (a retry) brings its own log: add it, and follow it.
      Array.prototype.forEach.call(fragment.querySelectorAll("section.build"), function (section) {
        if (!document.getElementById(section.id)) {
          var added = document.importNode(section, true);
          builds.appendChild(added);
          localTimes(added);
          var pre = added.querySelector("pre.log[data-log-url]");
          if (pre && window.fcFollowLog) {
            window.fcFollowLog(pre);
          }
        }
      });
    }
    Array.prototype.forEach.call(fragment.querySelectorAll("[data-live-id]"), function (part) {
      var id = part.getAttribute("data-live-id");
      var target = document.querySelector('[data-live-id="' + id + '"]');
      if (target && target.innerHTML !== part.innerHTML) {
        target.innerHTML = part.innerHTML;
        localTimes(target);
        seenElapsed(target);
      }
    });
    compareMine(before, myStates(document));
  }

  function liveUrl() {
    var url = marker.getAttribute("data-live-url");
    if (!since) {
      return url;
    }
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "since=" + encodeURIComponent(since);
  }

  function refresh() {
    if (!marker || busy) {
      return Promise.resolve();
    }
    busy = true;
    var headers = { "X-Requested-With": "fetch" };
    if (etag) {
      headers["If-None-Match"] = etag;
    }
    // no-store: the browser's cache stays out of it; the script sends If-None-Match itself,
    // so a 304 comes to it as a 304.
    return fetch(liveUrl(), { credentials: "same-origin", cache: "no-store", headers: headers })
      .then(function (response) {
        if (response.status === 304) {
          return; // nothing changed
        }
        if (!response.ok) {
          throw new Error("answered " + response.status);
        }
        return response.text().then(function (html) {
          swap(html);
          // Only once swapped: an answer not shown is asked for again.
          etag = response.headers.get("ETag");
          since = response.headers.get("X-Live-Cursor");
          ended = ended || response.headers.get("X-Live-Final") === "1";
        });
      })
      .catch(function () {
        // Quietly: the next round tries again.
      })
      .then(function () {
        busy = false;
      });
  }

  function stopped() {
    var state = document.getElementById("deploy-state");
    return ended || (state !== null && FINAL.indexOf(state.getAttribute("data-state")) >= 0);
  }

  // One timer at most: each call replaces the one waiting, so a poll at once (the tab seen
  // again, a button) and the round under way never make two.
  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (stopped()) {
      return; // the deploy has ended: nothing more will change
    }
    var every = parseInt(marker.getAttribute("data-live-every"), 10) || 2000;
    if (document.visibilityState === "hidden") {
      every = Math.max(every, HIDDEN_EVERY_MS);
    }
    timer = setTimeout(function () {
      refresh().then(schedule);
    }, every);
  }

  // ------------------------------------------------------------------ buttons

  function onSubmit(event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("js-action")) {
      return;
    }
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      return;
    }
    var button = form.querySelector("button");
    if (button) {
      button.disabled = true;
    }
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", Accept: "application/json" },
    })
      .then(function (response) {
        return response.json();
      })
      .then(function (answer) {
        if (answer.location) {
          window.location.assign(answer.location);
          return;
        }
        flash(answer.level || "info", answer.message || "Done.");
        return refresh();
      })
      .catch(function () {
        // Not JSON or no network: post the form the old way, so nothing is lost.
        form.classList.remove("js-action");
        form.submit();
      })
      .then(function () {
        if (button) {
          button.disabled = false;
        }
      });
  }

  // ------------------------------------------------------------------ branch suggestions

  function suggestBranches(input) {
    var loaded = false;
    input.addEventListener("focus", function () {
      if (loaded) {
        return;
      }
      loaded = true;
      fetch(input.getAttribute("data-branches-url"), { credentials: "same-origin" })
        .then(function (response) {
          return response.json();
        })
        .then(function (answer) {
          var list = document.getElementById(input.getAttribute("list"));
          (answer.branches || []).forEach(function (name) {
            var option = document.createElement("option");
            option.value = name;
            list.appendChild(option);
          });
        })
        .catch(function () {
          loaded = false;
        });
    });
  }

  // ------------------------------------------------------------------ start

  function start() {
    localTimes(document);
    seenElapsed(document);
    setInterval(tickElapsed, 1000);
    offerNotifications();
    document.addEventListener("submit", onSubmit);
    Array.prototype.forEach.call(document.querySelectorAll("input[data-branches-url]"), suggestBranches);
    marker = document.querySelector("[data-live-url]");
    if (marker && !marker.hasAttribute("data-live-final")) {
      myStates(document);
      schedule();
      document.addEventListener("visibilitychange", function () {
        if (document.visibilityState === "visible" && !stopped()) {
          clearTimeout(timer);
          refresh().then(schedule); // at once: what changed while hidden
        }
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
