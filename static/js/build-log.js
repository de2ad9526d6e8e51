/* The deploy page, live: running builds' logs grow in place, and live.js keeps the rest of the
 * page up to date. Plain script, no build step. Every value comes from data- attributes, and
 * log text is only ever added as text nodes, never parsed as HTML. Without JavaScript the page
 * falls back to its <noscript> refresh.
 *
 *   <pre class="log" data-log-url="/api/deploys/7/builds/2/log" data-next-offset="1234">
 */
(function () {
  "use strict";

  var LOG_EVERY_MS = 1000;
  var STATE_EVERY_MS = 2000;
  var HIDDEN_EVERY_MS = 5000; // a tab nobody looks at asks less often
  var NEAR_BOTTOM_PX = 4;
  var pollers = [];

  function interval(ms) {
    return document.hidden ? Math.max(ms, HIDDEN_EVERY_MS) : ms;
  }

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) {
        throw new Error(url + " answered " + response.status);
      }
      return response.json();
    });
  }

  /* Run `step` every `everyMs` (slower while the tab is hidden), one round at a time.
   * `step` returns a promise of: false to stop, true to go on at the usual pace, or a number
   * of milliseconds to wait instead. A failed round (network, server) is retried next tick. */
  function repeat(everyMs, step) {
    var timer = null;
    var busy = false;
    var stopped = false;

    function schedule(delayMs) {
      if (!stopped) {
        timer = setTimeout(run, delayMs === undefined ? interval(everyMs) : delayMs);
      }
    }

    function run() {
      timer = null;
      busy = true;
      Promise.resolve()
        .then(step)
        .then(
          function (next) {
            busy = false;
            if (next === false) {
              stopped = true;
            } else {
              schedule(typeof next === "number" ? next : undefined);
            }
          },
          function () {
            busy = false;
            schedule();
          }
        );
    }

    pollers.push({
      wake: function () {
        if (timer !== null && !busy) {
          clearTimeout(timer);
          run();
        }
      },
    });
    schedule();
  }

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight <= NEAR_BOTTOM_PX;
  }

  function pageAtBottom() {
    var root = document.documentElement;
    return window.innerHeight + window.scrollY >= root.scrollHeight - NEAR_BOTTOM_PX;
  }

  function followLog(pre) {
    var url = pre.getAttribute("data-log-url");
    var offset = parseInt(pre.getAttribute("data-next-offset"), 10);
    if (!url || !(offset >= 0)) {
      return;
    }
    var join = url.indexOf("?") < 0 ? "?" : "&";

    repeat(LOG_EVERY_MS, function () {
      return getJSON(url + join + "offset=" + offset).then(function (data) {
        if (typeof data.next_offset !== "number" || typeof data.text !== "string") {
          throw new Error("not a build log answer");
        }
        var stickLog = atBottom(pre);
        var followPage = pageAtBottom();
        if (data.missed_chars > 0) {
          pre.appendChild(
            document.createTextNode(
              "\n[" + data.missed_chars + " characters were cut before they could be shown]\n"
            )
          );
        }
        if (data.text) {
          pre.appendChild(document.createTextNode(data.text));
        }
        if (stickLog) {
          pre.scrollTop = pre.scrollHeight;
        }
        if (followPage) {
          window.scrollTo(0, document.documentElement.scrollHeight);
        }
        offset = data.next_offset;
        pre.setAttribute("data-next-offset", String(offset));
        if (data.finished) {
          pre.classList.remove("live");
          return false;
        }
        // More is already written than one answer carries: ask again straight away.
        return typeof data.end === "number" && offset < data.end ? 0 : true;
      });
    });
  }

  function start() {
    // The end of a log says why a build failed: show it first.
    Array.prototype.forEach.call(document.querySelectorAll("pre.log"), function (pre) {
      pre.scrollTop = pre.scrollHeight;
    });
    Array.prototype.forEach.call(document.querySelectorAll("pre.log[data-log-url]"), followLog);
    // live.js adds the log of a new attempt (a retry) to the page: follow it too.
    window.fcFollowLog = function (pre) {
      pre.scrollTop = pre.scrollHeight;
      followLog(pre);
    };
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        pollers.forEach(function (poller) {
          poller.wake();
        });
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
