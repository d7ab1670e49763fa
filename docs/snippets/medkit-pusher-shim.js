// OpenMEDKit: send the MEDKit JS client's bundled Pusher connection to your own server.
//
// MEDKit (@muxy/extensions-js) listens for viewer events in a sandbox page through pusher-js,
// whose host (ws-us2.pusher.com) and app key are fixed inside the bundle. Load this before
// the MEDKit bundle, with window.OPENMEDKIT_PUSHER_URL set to your server's ws:// or wss://
// origin, and every Pusher WebSocket the page opens goes to OpenMEDKit's /app/<key> endpoint
// instead; sdk.listen() then works unchanged.
//
//   <script>window.OPENMEDKIT_PUSHER_URL = 'ws://127.0.0.1:5000';</script>
//   <script src="medkit-pusher-shim.js"></script>
//   <script src="https://unpkg.com/@muxy/extensions-js/dist/medkit.umd.js"></script>
(function (window) {
  var server = String(window.OPENMEDKIT_PUSHER_URL || 'ws://127.0.0.1:5000').replace(/\/+$/, '');
  var Native = window.WebSocket;
  if (!Native || Native.__openmedkit) return;
  var pusherHost = /^wss?:\/\/ws(-[a-z0-9]+)?\.pusher(app)?\.com(:\d+)?/i;
  function OpenMEDKitWebSocket(url, protocols) {
    var target = String(url).replace(pusherHost, server);
    return protocols === undefined ? new Native(target) : new Native(target, protocols);
  }
  OpenMEDKitWebSocket.prototype = Native.prototype;
  OpenMEDKitWebSocket.CONNECTING = 0;
  OpenMEDKitWebSocket.OPEN = 1;
  OpenMEDKitWebSocket.CLOSING = 2;
  OpenMEDKitWebSocket.CLOSED = 3;
  OpenMEDKitWebSocket.__openmedkit = true;
  window.WebSocket = OpenMEDKitWebSocket;
})(window);
