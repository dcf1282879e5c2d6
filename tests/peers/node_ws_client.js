#!/usr/bin/env node
// Matrix client on Node `ws` (permessage-deflate on).
//
// Usage: NODE_PATH=$DEPS/node/node_modules node node_ws_client.js URL
//          [--cafile F] [--timeout 60] [--sizes a,b,..]
// Sends every matrix message (text and binary of each size), checks each echo
// by type and byte-for-byte, closes with 1000 and requires the server's 1000.
// Prints `OK <n> messages` and exits 0, or `ERROR ...` and exits 1.
'use strict';

const fs = require('fs');
const path = require('path');
const WebSocket = require('ws');
const { PEER_SIZES, runMatrix } = require(path.join(__dirname, 'peer_matrix.js'));

const NAME = 'node_ws_client';
const MAX_MESSAGE = 64 * 1024 * 1024;

function usage(msg) {
  console.log(`ERROR ${NAME}: ${msg}`);
  console.error('usage: node_ws_client.js URL [--cafile F] [--timeout 60] [--sizes a,b,..]');
  process.exit(1);
}

function parseArgs(argv) {
  const out = { url: null, cafile: null, timeout: 60, sizes: PEER_SIZES };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    if (a === '--cafile') out.cafile = val();
    else if (a === '--timeout') out.timeout = Number(val());
    else if (a === '--sizes') out.sizes = val().split(',').filter((s) => s !== '').map(Number);
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (out.url === null) out.url = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!out.url) usage('missing URL');
  return out;
}

const args = parseArgs(process.argv.slice(2));
const watchdog = setTimeout(() => {
  console.log(`ERROR ${NAME}: timed out after ${args.timeout} s`);
  process.exit(1);
}, args.timeout * 1000);

const wsOpts = { perMessageDeflate: true, maxPayload: MAX_MESSAGE, handshakeTimeout: 20000 };
if (args.cafile) wsOpts.ca = fs.readFileSync(args.cafile);

runMatrix(() => new WebSocket(args.url, wsOpts), args.sizes, (m) => console.error(`${NAME}: ${m}`))
  .then((n) => {
    clearTimeout(watchdog);
    console.log(`OK ${n} messages`);
    process.exit(0);
  })
  .catch((e) => {
    console.log(`ERROR ${NAME}: ${e && e.message ? e.message : e}`);
    process.exit(1);
  });
