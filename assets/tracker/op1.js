/*
 * Gatrix tracker: the OpenPanel web API (op('track'|'identify'|...)) in a small script served
 * by the analytics server itself. Embed either way:
 *   <script src="https://analytics.example/op1.js" data-client-id="…" defer></script>
 *   window.op = window.op || function () { (window.op.q = window.op.q || []).push(arguments) };
 *   op('init', { clientId: '…', apiUrl: 'https://analytics.example' });
 * No cookies. Opt out with localStorage "op_disabled" = "1" or { disabled: true }.
 */
(function (w, d) {
  var VERSION = "1.0.0";
  var queued = (w.op && w.op.q) || [];
  var me = d.currentScript;
  // the API lives where the script came from, path prefix included (e.g. /api/v1/analytics)
  var scriptOrigin = me && me.src ? me.src.replace(/\/[^\/?#]*([?#].*)?$/, "") : "";
  var cfg = null; // set by init
  var globals = {};
  var profileId = null;
  var lastPath = null;
  var lastUrl = d.referrer;

  function attr(name) {
    return me && me.getAttribute("data-" + name);
  }

  function disabled() {
    try {
      if (w.localStorage.getItem("op_disabled") === "1") return true;
    } catch (e) {}
    return !cfg || cfg.disabled;
  }

  // fetch with keepalive; retried only when nothing was accepted (network error or 5xx)
  function send(type, payload, attempt) {
    if (disabled()) return;
    attempt = attempt || 0;
    fetch(cfg.apiUrl + "/track", {
      method: "POST",
      keepalive: true,
      headers: {
        "content-type": "application/json",
        "openpanel-client-id": cfg.clientId,
        "openpanel-sdk-name": "gatrix-web",
        "openpanel-sdk-version": VERSION
      },
      body: JSON.stringify({ type: type, payload: payload })
    }).then(function (r) {
      if (r.status >= 500) retry();
    }, retry);
    function retry() {
      if (attempt < 3) setTimeout(function () { send(type, payload, attempt + 1); }, 500 << attempt);
    }
  }

  function assign(to, from) {
    for (var k in from) if (Object.prototype.hasOwnProperty.call(from, k)) to[k] = from[k];
    return to;
  }

  function track(name, props) {
    var p = assign(assign({}, globals), props || {});
    p.__path = p.__path || location.href;
    p.__title = d.title;
    p.__referrer = lastUrl;
    p.__screen = screen.width + "x" + screen.height;
    p.__language = navigator.language;
    var payload = { name: name, properties: p };
    if (profileId) payload.profileId = profileId;
    send("track", payload);
  }

  function screenView() {
    var path = cfg.hashRouting ? location.href : location.href.split("#")[0];
    if (path === lastPath) return; // replaceState with the same URL, double events
    track("screen_view", { __path: path });
    lastUrl = path;
    lastPath = path;
  }

  function counter(type, a, b) {
    var body = typeof a === "object" ? a : { property: a, value: b };
    body.profileId = body.profileId || profileId;
    if (body.profileId) send(type, body);
  }

  var api = {
    init: function (options) {
      cfg = assign({ apiUrl: scriptOrigin, trackScreenViews: true, trackOutgoingLinks: true,
                     trackAttributes: true, hashRouting: false }, options || {});
      cfg.apiUrl = cfg.apiUrl.replace(/\/$/, "");
      if (cfg.trackScreenViews) {
        var wrap = function (name) {
          var original = history[name];
          history[name] = function () {
            var out = original.apply(this, arguments);
            setTimeout(screenView);
            return out;
          };
        };
        wrap("pushState");
        wrap("replaceState");
        w.addEventListener("popstate", screenView);
        if (cfg.hashRouting) w.addEventListener("hashchange", screenView);
        screenView();
      }
      d.addEventListener("click", onClick, true);
    },
    track: track,
    identify: function (profile) {
      profileId = profile.profileId;
      send("identify", profile);
    },
    increment: function (a, b) { counter("increment", a, b); },
    decrement: function (a, b) { counter("decrement", a, b); },
    setGlobalProperties: function (props) { assign(globals, props); },
    clear: function () {
      profileId = null;
      globals = {};
    }
  };

  function onClick(event) {
    var el = event.target;
    while (el && el !== d) {
      var name = el.getAttribute && el.getAttribute("data-track");
      if (name && cfg.trackAttributes) {
        var props = {};
        for (var i = 0; i < el.attributes.length; i++) {
          var a = el.attributes[i];
          if (a.name.indexOf("data-") === 0 && a.name !== "data-track") {
            props[a.name.slice(5).replace(/-(\w)/g, function (_, c) { return c.toUpperCase(); })] = a.value;
          }
        }
        return track(name, props);
      }
      if (el.tagName === "A" && el.href && cfg.trackOutgoingLinks && el.host !== location.host) {
        return track("link_out", { href: el.href, text: (el.innerText || "").trim().slice(0, 200) });
      }
      el = el.parentNode;
    }
  }

  w.op = function (method) {
    var fn = api[method];
    if (fn) fn.apply(null, [].slice.call(arguments, 1));
  };
  var clientId = attr("client-id");
  var inits = queued.filter(function (q) { return q[0] === "init"; });
  if (clientId && !inits.length) {
    api.init({ clientId: clientId, apiUrl: attr("api-url") || scriptOrigin,
               hashRouting: attr("hash-routing") === "true", disabled: attr("disabled") === "true" });
  }
  // init first, whatever order the page queued its calls in
  inits.concat(queued.filter(function (q) { return q[0] !== "init"; })).forEach(function (q) {
    w.op.apply(null, q);
  });
})(window, document);
