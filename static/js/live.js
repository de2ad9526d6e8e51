/* Live pages without a build step: poll the page's server-rendered fragment and swap its parts.
 *
 *   <div hidden data-live-url="/live/dashboard/" data-live-every="3000"></div>
 *   <div data-live-id="app-shop-slot">...</div>   replaced by the same id from the fragment
 *
 * The fragment is rendered (and escaped) by the server with the same templates as the page.
 * Also here: buttons that post without a reload (form.js-action), times in the viewer's time
 * zone (<time datetime>), branch suggestions for the queue form, and telling the owner when
 * their deploy starts or ends (in the page, and as a browser notification if allowed).
 * Without JavaScript every page still reads, and every button still posts.
 */
(function () {
  "use strict";

  var HIDDEN_EVERY_MS = 10000;
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
      }
    });
    compareMine(before, myStates(document));
  }

  function refresh() {
    if (!marker || busy) {
      return Promise.resolve();
    }
    busy = true;
    return fetch(marker.getAttribute("data-live-url"), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("answered " + response.status);
        }
        return response.text();
      })
      .then(swap)
      .catch(function () {
        // Quietly: the next round tries again.
      })
      .then(function () {
        busy = false;
      });
  }

  function schedule() {
    var every = parseInt(marker.getAttribute("data-live-every"), 10) || 3000;
    if (document.hidden) {
      every = Math.max(every, HIDDEN_EVERY_MS);
    }
    timer = setTimeout(function () {
      refresh().then(function () {
        var state = document.getElementById("deploy-state");
        if (state && FINAL.indexOf(state.getAttribute("data-state")) >= 0) {
          timer = null; // the deploy has ended: nothing more will change
          return;
        }
        schedule();
      });
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
    offerNotifications();
    document.addEventListener("submit", onSubmit);
    Array.prototype.forEach.call(document.querySelectorAll("input[data-branches-url]"), suggestBranches);
    marker = document.querySelector("[data-live-url]");
    if (marker && !marker.hasAttribute("data-live-final")) {
      myStates(document);
      schedule();
      document.addEventListener("visibilitychange", function () {
        if (!document.hidden && timer !== null) {
          clearTimeout(timer);
          refresh().then(schedule);
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
