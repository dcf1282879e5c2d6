# -*- coding: utf-8 -*-
"""wstest (autobahntestsuite 0.8.2, Python 2.7) with listening sockets bound to 127.0.0.1.

wstest's fuzzingserver calls autobahn.twisted.websocket.listenWS(factory, ctx) with the
default interface '' (all interfaces) no matter what host the spec's "url" names
(autobahntestsuite/fuzzing.py startServer -> listenWS; autobahn/twisted/websocket.py
listenWS(..., interface='')). This wrapper forces 127.0.0.1 and otherwise behaves
exactly like `wstest` (same command line). Pass `-u 0` to disable the embedded web
server, which would otherwise listen on port 8080 on all interfaces.

Run it with the autobahn virtualenv's interpreter:
    $TETHER_DEPS/autobahn/bin/python -u conformance/wstest_local.py -m fuzzingserver -s spec.json -u 0
"""
import sys

from autobahntestsuite import fuzzing, wstest

_listenWS = fuzzing.listenWS


def _listen_localhost(factory, contextFactory=None, backlog=50, interface=''):
    return _listenWS(factory, contextFactory, backlog, interface or '127.0.0.1')


fuzzing.listenWS = _listen_localhost

if __name__ == '__main__':
    sys.argv[0] = 'wstest'
    sys.exit(wstest.run())
