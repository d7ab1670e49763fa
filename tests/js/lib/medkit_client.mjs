// Drives the real @muxy/extensions-js client (UMD bundle, 2.4.18) inside a jsdom window, one
// window per simulated user (Muxy is a per-window singleton).
//
//   const u = await openUser(srv.base, {role: 'viewer', channelID: '100', userID: '201'});
//   await u.sdk.setViewerState({a: 1});
//   u.close();
//
// The page origin defaults to the server base (no CORS); pass `origin` (e.g.
// 'http://localhost:<port>') to host the page elsewhere so jsdom enforces CORS and preflights.
//
// Every window is recorded; closeAllUsers() closes the ones still open. Closing a jsdom window
// clears its timers, including the SDK's 25-minute re-auth setInterval, so Node can exit.
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {JSDOM, VirtualConsole} from 'jsdom';

const require = createRequire(import.meta.url);
const BUNDLE_PATH = path.join(path.dirname(require.resolve('@muxy/extensions-js/package.json')),
                              'dist', 'medkit.umd.js');
let bundleText = null;
function bundle() {
  if (bundleText === null) bundleText = fs.readFileSync(BUNDLE_PATH, 'utf8');
  return bundleText;
}

const openWindows = new Set();

// Dummy WebSocket so pusher-js (sandbox messenger) never dials wss://ws-us2.pusher.com.
function installDummyWebSocket(window) {
  class DummyWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.onopen = this.onclose = this.onerror = this.onmessage = null;
    }
    send() {}
    close() { this.readyState = 3; }
    addEventListener() {}
    removeEventListener() {}
  }
  DummyWebSocket.CONNECTING = 0; DummyWebSocket.OPEN = 1;
  DummyWebSocket.CLOSING = 2; DummyWebSocket.CLOSED = 3;
  window.WebSocket = DummyWebSocket;
  window.MozWebSocket = undefined;
}

// The page snippet of docs/snippets/medkit-pusher-shim.js, exactly as developers load it.
const SHIM_PATH = path.join(path.dirname(new URL(import.meta.url).pathname),
                            '../../../docs/snippets/medkit-pusher-shim.js');

// Sends the bundled pusher-js connection to the server (as the docs tell developers to), and
// makes sure nothing in the window can reach a host other than loopback: pusher-js falls back
// to HTTP transports on Pusher's hosts when its WebSocket fails.
function installPusherShim(window, serverBase) {
  window.OPENMEDKIT_PUSHER_URL = serverBase.replace(/^http/, 'ws');
  window.eval(fs.readFileSync(SHIM_PATH, 'utf8'));
  const open = window.XMLHttpRequest.prototype.open;
  window.XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    const u = new window.URL(url, window.location.href);
    if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') {
      throw new Error(`test window refused a request to ${u.host}`);
    }
    return open.call(this, method, url, ...rest);
  };
}

// Opens one simulated user. Returns {window, Muxy, sdk, user, errors, close()}.
// `transactionsEnabled` and `purchasableItems` (window.MEDKIT_PURCHASABLE_ITEMS) set up MEDKit's
// dev purchase client, so sdk.purchase(sku) sends POST bits/transactions.
// With `pusher: true` the SDK's Pusher connection goes to the server (sdk.listen() works);
// otherwise a dummy WebSocket keeps it from dialling anywhere.
// `errors` collects jsdom console errors / uncaught script errors of that window (useful when a
// CORS failure only shows up as a network error).
export async function openUser(serverBase, {role, channelID, userID, clientID = 'testclientid',
                                            origin, jwt, pusher = false,
                                            transactionsEnabled = false, purchasableItems,
                                            loadTimeoutMs = 10000} = {}) {
  const errors = [];
  const virtualConsole = new VirtualConsole();
  virtualConsole.on('jsdomError', (e) => errors.push(e));
  virtualConsole.on('error', (...a) => errors.push(a.join(' ')));
  const pageUrl = (origin || serverBase).replace(/\/?$/, '/');
  const dom = new JSDOM('<!doctype html><html><head></head><body></body></html>',
                        {url: pageUrl, runScripts: 'outside-only', virtualConsole});
  const window = dom.window;
  if (pusher) {
    installPusherShim(window, serverBase);
  } else {
    installDummyWebSocket(window);
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    openWindows.delete(close);
    try { window.close(); } catch { /* already gone */ }
  };
  openWindows.add(close);
  try {
    window.eval(bundle());
    const Muxy = window.Muxy && (window.Muxy.default || window.Muxy);
    if (!Muxy || typeof Muxy.setup !== 'function') throw new Error('Muxy global not found after eval');
    let opts = new Muxy.DebuggingOptions().url(serverBase);
    if (role !== undefined) opts = opts.role(role);
    if (channelID !== undefined) opts = opts.channelID(String(channelID));
    if (userID !== undefined) opts = opts.userID(String(userID));
    if (jwt !== undefined) opts = opts.jwt(jwt);
    Muxy.debug(opts);
    // Dev purchases (sdk.purchase): the products, and whether MEDKit POSTs bits/transactions.
    if (purchasableItems !== undefined) window.MEDKIT_PURCHASABLE_ITEMS = purchasableItems;
    Muxy.setup(transactionsEnabled ? {clientID, quiet: true, transactionsEnabled: true}
                                   : {clientID, quiet: true});
    const sdk = new Muxy.SDK();
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(
        `sdk.loaded() did not settle within ${loadTimeoutMs} ms (${role}/${channelID}/${userID}); ` +
        `window errors: ${errors.map(String).join(' | ')}`)), loadTimeoutMs);
    });
    try {
      await Promise.race([sdk.loaded(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return {window, Muxy, sdk, user: sdk.user, errors, close, clientID};
  } catch (e) {
    close();
    throw e;
  }
}

// Closes every window opened by openUser() that is still open.
export function closeAllUsers() {
  for (const close of [...openWindows]) close();
}

// Awaits a promise that must reject; returns the rejection value (the SDK rejects with the
// server's parsed JSON body, or a string).
export async function rejection(promise) {
  let value;
  try {
    value = await promise;
  } catch (e) {
    return e;
  }
  throw new Error(`expected rejection, got resolution ${JSON.stringify(value)}`);
}
