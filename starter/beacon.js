/* leadloop site beacon: keeps the visitor id from an email click (?ll=...) in a first-party cookie
   and posts each page view. Embed: <script src="https://LEADLOOP/beacon.js" data-site-key="KEY" async></script> */
(function () {
  var script = document.currentScript;
  if (!script) return;
  var siteKey = script.getAttribute("data-site-key");
  var endpoint = script.src.replace(/\/beacon\.js(\?.*)?$/, "") + "/v";
  var params = new URLSearchParams(location.search);
  var fromLink = params.get("ll");
  if (fromLink) {
    document.cookie = "ll=" + encodeURIComponent(fromLink) + "; path=/; max-age=31536000; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    params.delete("ll");
    var rest = params.toString();
    history.replaceState(history.state, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  var match = document.cookie.match(/(?:^|;\s*)ll=([^;]+)/);
  var visitor = match ? decodeURIComponent(match[1]) : null;
  if (!visitor || !siteKey) return;
  var body = JSON.stringify({ site_key: siteKey, visitor: visitor, url: location.href, title: document.title || null,
    referrer: document.referrer || null });
  // text/plain keeps it a simple cross-origin request: no preflight, no cookies sent to leadloop
  if (navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([body], { type: "text/plain" }))) return;
  fetch(endpoint, { method: "POST", body: body, keepalive: true, mode: "no-cors", credentials: "omit" });
})();
