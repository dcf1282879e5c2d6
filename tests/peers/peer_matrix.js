// Shared by node_ws_client.js (required as a CommonJS module) and
// chromium_client.py (its source is injected into the page as-is), so it must
// stay plain ES2017 with no Node-only or DOM-only globals at top level.
//
// makeMatrix(sizes) -> [{label, data}] : for each size a text message (a JS
//   string whose UTF-8 encoding is exactly `size` bytes, with 2/3/4-byte
//   characters whenever size >= 9) then a binary message (Uint8Array of
//   `size` bytes: alternating 4 KiB blocks of xorshift pseudo-random bytes and
//   of a repeated pattern). Deterministic.
// runMatrix(openSocket, sizes, log) -> Promise<number of messages>
//   openSocket() must return a browser-style WebSocket (onopen/onmessage/
//   onerror/onclose, binaryType). Sends each message, awaits its echo, checks
//   type and bytes, then closes with 1000 and requires the server's close
//   frame to carry 1000 (CloseEvent.wasClean && code === 1000).

var PEER_SIZES = [0, 125, 126, 64 * 1024, 16 * 1024 * 1024];

function peerXorshift(seed) {
  var x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return function () {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

var PEER_TOKENS = (
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?'.split('')
).concat(['é', 'ß', 'ñ', 'ø', 'Ω', 'д', 'ж', 'λ', 'ü', 'ç'])
  .concat(['€', '中', '文', '日', '本', '✓', '→', '…', '한', 'あ'])
  .concat(['😀', '🦀', '𝄞', '🚀', '🌍'])
  .concat(['tether ', 'websocket ', 'permessage-deflate ', '\n']);

function peerUtf8Len(s) {
  var n = 0;
  for (var i = 0; i < s.length; i++) {
    var c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

var PEER_TOKEN_LENS = PEER_TOKENS.map(peerUtf8Len);

function peerTextPayload(n) {
  if (n === 0) return '';
  var rnd = peerXorshift(n * 2 + 1);
  var parts = [];
  var used = 0;
  if (n >= 9) { parts.push('é€🦀'); used = 9; }
  for (;;) {
    var k = (rnd() >>> 8) % PEER_TOKENS.length;
    var len = PEER_TOKEN_LENS[k];
    if (used + len > n) break;
    parts.push(PEER_TOKENS[k]);
    used += len;
  }
  // Pad with ASCII to the exact byte size.
  while (used < n) { parts.push('x'); used += 1; }
  return parts.join('');
}

function peerBinaryPayload(n) {
  var out = new Uint8Array(n);
  var rnd = peerXorshift(n * 2 + 2);
  var pat = 'tether-binary-pattern';
  var block = 4096;
  for (var i = 0; i < n; i++) {
    if (((i / block) | 0) % 2 === 0) {
      out[i] = rnd() >>> 24;
    } else {
      var j = i % 277;
      out[i] = j < 256 ? j : pat.charCodeAt(j - 256);
    }
  }
  return out;
}

function makeMatrix(sizes) {
  var out = [];
  (sizes || PEER_SIZES).forEach(function (n) {
    out.push({ label: 'text/' + n, data: peerTextPayload(n) });
    out.push({ label: 'binary/' + n, data: peerBinaryPayload(n) });
  });
  return out;
}

function peerDescribe(expected, got) {
  var te = typeof expected === 'string' ? 'string' : 'binary';
  var tg = typeof got === 'string' ? 'string'
    : (got instanceof ArrayBuffer ? 'binary' : Object.prototype.toString.call(got));
  if (te !== tg) return 'type mismatch: expected ' + te + ', got ' + tg;
  if (te === 'string') {
    if (expected === got) return null;
    if (expected.length !== got.length) {
      return 'length mismatch: expected ' + expected.length + ' UTF-16 units, got ' + got.length;
    }
    for (var i = 0; i < expected.length; i++) {
      if (expected.charCodeAt(i) !== got.charCodeAt(i)) return 'content mismatch at UTF-16 index ' + i;
    }
    return null;
  }
  var g = new Uint8Array(got);
  if (g.length !== expected.length) {
    return 'length mismatch: expected ' + expected.length + ' bytes, got ' + g.length;
  }
  for (var k = 0; k < g.length; k++) {
    if (g[k] !== expected[k]) return 'content mismatch at byte ' + k;
  }
  return null;
}

function runMatrix(openSocket, sizes, log) {
  log = log || function () {};
  var msgs = makeMatrix(sizes);
  return new Promise(function (resolve, reject) {
    var ws = openSocket();
    ws.binaryType = 'arraybuffer';
    var i = 0;
    var t0 = 0;
    var finished = false;
    var closing = false;
    function now() { return Date.now(); }
    function fail(msg) {
      if (finished) return;
      finished = true;
      try { ws.close(1000); } catch (e) { /* ignore */ }
      reject(new Error(msg));
    }
    function sendNext() {
      t0 = now();
      ws.send(msgs[i].data);
    }
    ws.onopen = function () {
      log('connected, extensions=' + JSON.stringify(ws.extensions));
      if (msgs.length === 0) { closing = true; ws.close(1000); } else sendNext();
    };
    ws.onmessage = function (ev) {
      if (finished) return;
      if (closing || i >= msgs.length) return fail('unexpected extra message');
      var m = msgs[i];
      var err = peerDescribe(m.data, ev.data);
      if (err) return fail(m.label + ': ' + err);
      log(m.label + ' echoed in ' + ((now() - t0) / 1000).toFixed(3) + ' s');
      i += 1;
      if (i < msgs.length) sendNext();
      else { closing = true; ws.close(1000); }
    };
    ws.onerror = function (ev) {
      fail('error event' + (ev && ev.message ? ': ' + ev.message : '') +
        ' after ' + i + ' of ' + msgs.length + ' messages');
    };
    ws.onclose = function (ev) {
      if (finished) return;
      if (!closing) return fail('connection closed early (code ' + ev.code + ') after ' + i + ' of ' + msgs.length + ' messages');
      if (!ev.wasClean) return fail('close was not clean (code ' + ev.code + ')');
      if (ev.code !== 1000) return fail('server close code ' + ev.code + ' (expected 1000)');
      finished = true;
      resolve(msgs.length);
    };
  });
}

if (typeof module !== 'undefined' && module.exports) {
  module.exports = { PEER_SIZES: PEER_SIZES, makeMatrix: makeMatrix, runMatrix: runMatrix };
}
