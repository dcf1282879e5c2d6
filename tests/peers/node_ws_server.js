#!/usr/bin/env node
// Echo server on Node `ws` (perMessageDeflate: true, maxPayload 64 MiB).
//
// Usage: NODE_PATH=$DEPS/node/node_modules node node_ws_server.js
//          [--host 127.0.0.1] [--port 0] [--cert F --key F]
// Prints `LISTENING <port>` on stdout once ready; runs until SIGTERM/SIGINT.
// Text is echoed as text, binary as binary.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const NAME = 'node_ws_server';
const MAX_MESSAGE = 64 * 1024 * 1024;

function usage(msg) {
  console.error(`${NAME}: ${msg}`);
  console.error('usage: node_ws_server.js [--host 127.0.0.1] [--port 0] [--cert F --key F]');
  process.exit(2);
}

const opts = { host: '127.0.0.1', port: 0, cert: null, key: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  if (a === '--host') opts.host = val();
  else if (a === '--port') opts.port = Number(val());
  else if (a === '--cert') opts.cert = val();
  else if (a === '--key') opts.key = val();
  else usage(`unknown argument ${a}`);
}
if (!!opts.cert !== !!opts.key) usage('--cert and --key go together');

const server = opts.cert
  ? https.createServer({ cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) })
  : http.createServer();
server.on('request', (req, res) => { res.writeHead(426); res.end('WebSocket only\n'); });

const wss = new WebSocketServer({ server, perMessageDeflate: true, maxPayload: MAX_MESSAGE });
wss.on('connection', (ws, req) => {
  console.error(`${NAME}: connection from ${req.socket.remoteAddress}:${req.socket.remotePort}, ` +
    `extensions=${JSON.stringify(ws.extensions)}`);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', (e) => console.error(`${NAME}: error: ${e.message}`));
  ws.on('close', (code, reason) => console.error(`${NAME}: closed code=${code} reason=${JSON.stringify(reason.toString())}`));
});

server.listen(opts.port, opts.host, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

function shutdown() {
  for (const c of wss.clients) c.terminate();
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
