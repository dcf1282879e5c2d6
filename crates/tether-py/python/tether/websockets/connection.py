"""A WebSocket connection on asyncio's own transport, driven by tether's
sans-I/O core (``tether._tether.Protocol``): the shape of Python
websockets' ``asyncio.connection.Connection``.

Bytes read (into the connection's own buffer: a ``BufferedProtocol``) go
into the core; what comes back is a
list of events (messages, pings, pongs, a close) and bytes to write. The
core's next deadline (keepalive ping, pong timeout, close timeout) is one
``call_later`` timer, moved only when the deadline comes earlier: a timer
that fires early just asks the core again.

Received messages wait in a queue of at most ``max_queue``; beyond that
the transport stops reading (backpressure to the peer) until ``recv``
takes some. ``send`` waits while the transport's write buffer is above
``write_limit``.

Writes are batched per loop turn. The first message sent after a read
goes out at once (a reply's latency is one system call); messages sent
after it in the same turn, and broadcasts, wait in the core and leave in
one write per connection when the turn ends (``_flush_turn``), or as soon
as ``QUEUE_LIMIT`` bytes wait. A program relaying many messages per turn
makes one system call per connection, not one per message.
"""

import asyncio
import collections
import logging
import os
import threading
import uuid

from .. import _tether
from .exceptions import (
    OK_CLOSE_CODES,
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
    ProtocolError,
)
from .frames import Close
from .protocol import _BY_NAME, State

__all__ = ["Connection"]

_TEXT = _tether.EV_TEXT
_BINARY = _tether.EV_BINARY
_PING = _tether.EV_PING
_PONG = _tether.EV_PONG
_CLOSE = _tether.EV_CLOSE
_FAILED = _tether.EV_FAILED
_TIMEOUT = _tether.EV_TIMEOUT
_SIMPLE = (str, bytes)


#: Bytes read from the transport in one go. asyncio reads into a buffer we
#: give it (``BufferedProtocol``), and the core takes what it needs before
#: the read returns, so one buffer per thread serves every connection: no
#: ``bytes`` object per read, and no buffer held by an idle connection.
READ_BUFFER = 64 * 1024

_thread_buffers = threading.local()

#: Bytes a connection's core may hold for the end of the loop turn; beyond
#: them they are written at once (and the transport's limit applies).
QUEUE_LIMIT = 64 * 1024

#: Per thread: the event loop running there and its connections whose core
#: holds bytes queued in this loop turn.
_turn = threading.local()


def _pending_flushes(loop):
    """The connections of ``loop`` waiting for the end of the turn (a new,
    empty list when another loop runs in this thread now)."""
    state = getattr(_turn, "state", None)
    if state is None or state[0] is not loop:
        state = _turn.state = (loop, [])
    return state[1]


def _flush_turn(pending):
    """The loop turn ended: every connection with queued bytes writes them."""
    connections = pending.copy()
    pending.clear()
    for connection in connections:
        connection._flush_queued()


def _read_buffer():
    buffer = getattr(_thread_buffers, "buffer", None)
    if buffer is None:
        buffer = _thread_buffers.buffer = bytearray(READ_BUFFER)
        _thread_buffers.view = memoryview(buffer)
    return buffer


class Connection(asyncio.BufferedProtocol):
    """What clients and servers share: sending, receiving, pings, closing."""

    def __init__(self, protocol, *, max_queue=16, write_limit=2**15, close_timeout=10, logger=None):
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.id = uuid.uuid4()
        self.logger = logger if logger is not None else logging.getLogger("websockets")
        self.transport = None
        if isinstance(max_queue, tuple):
            max_queue = max_queue[0]
        self.max_queue = max_queue or 0
        self.write_limit = write_limit[0] if isinstance(write_limit, tuple) else write_limit
        self.close_timeout = close_timeout
        self._messages = collections.deque()
        self._message_waiter = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters = []
        self._pings = collections.OrderedDict()  # payload -> (future, sent at)
        self._timer = None
        self._timer_when = None
        self._lost = False
        self._closing = False
        # A close frame came, the connection failed or timed out: the end is
        # near, and recv no longer waits once the queue is empty.
        self._ending = False
        # Open and not closing (kept here so that broadcast asks no one), and
        # whether permessage-deflate is on.
        self._open = False
        self._compressed = False
        # Bytes wait in the core for this loop turn's flush (see the module
        # docs); reads so far, and the read after which a message last went
        # out at once.
        self._flush_pending = False
        self._reads = 0
        self._direct_at = -1
        self._failure = None  # (exception class, text) of a violation or timeout
        self.connection_lost_waiter = self.loop.create_future()
        self.request = None
        self.response = None
        self.subprotocol = None

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        if self.write_limit is not None:
            transport.set_write_buffer_limits(self.write_limit)

    def get_buffer(self, sizehint):
        _read_buffer()
        return _thread_buffers.view

    def buffer_updated(self, nbytes):
        self._reads += 1
        self._received(self.protocol.feed_from(_thread_buffers.buffer, nbytes))

    def data_received(self, data):
        self._reads += 1
        self._received(self.protocol.feed(data))

    def _received(self, fed):
        events, out, finished = fed
        if events:
            self._process(events)
            if self._ending and not self._messages:
                # A close that came with these events, with nothing for the
                # program to answer first, goes out now.
                extra = self.protocol.events_taken()
                out = out + extra if out and extra else (out or extra)
                finished = self.protocol.finished
        if self._lost:
            return
        if out:
            self.transport.write(out)
        if finished:
            self.transport.close()
        elif self._ending or self._timer is None:
            self._schedule()

    def eof_received(self):
        events = self.protocol.receive_eof()
        if events:
            self._process(events)
        self._flush_and_check()
        return False  # let asyncio close the transport

    def _opened(self):
        """The opening handshake succeeded: frames flow."""
        self._open = True
        self._compressed = self.protocol.compressed

    def _not_open(self):
        """Closing or closed: no more broadcasts here."""
        self._open = False

    def connection_lost(self, exc):
        self._lost = True
        self._not_open()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.protocol.state != "closed":
            self.protocol.receive_eof()
        closed = self._closed_exception()
        for future, _ in self._pings.values():
            if not future.done():
                future.set_exception(closed)
                future.exception()  # retrieved: no "never retrieved" warning
        self._pings.clear()
        self._wake_reader()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if not self.connection_lost_waiter.done():
            self.connection_lost_waiter.set_result(None)
        self._handshake_lost()

    def pause_writing(self):
        self._writing_paused = True

    def resume_writing(self):
        self._writing_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- events from the core -----------------------------------------------------

    def _process(self, events):
        for event in events:
            kind = event[0]
            if kind == _TEXT or kind == _BINARY:
                self._messages.append(event[1])
                if (self.max_queue and len(self._messages) >= self.max_queue and not self._reading_paused
                        and not self._closing):
                    self._reading_paused = True
                    self.transport.pause_reading()
                self._wake_reader()
            elif kind == _PONG:
                self._pong(event[1])
            elif kind == _PING:
                pass  # the core queued the pong
            elif kind == _CLOSE:
                self._ending = True
                self._not_open()
                self._wake_reader()
            elif kind == _FAILED:
                message, code = event[1], event[2]
                self._failure = (PayloadTooBig if code == 1009 else ProtocolError, message)
                self._ending = True
                self._not_open()
                self.logger.debug("! failing connection: %s", message)
                self._wake_reader()
            elif kind == _TIMEOUT:
                self._ending = True
                self._not_open()
                self.logger.debug("! timeout: %s", event[1])
                self._wake_reader()
            else:
                self._handshake_event(event)

    def _handshake_event(self, event):
        """Opening events: the client and server subclasses take them."""

    def _handshake_lost(self):
        """The transport went away: a pending opening fails."""

    def _pong(self, payload):
        if payload not in self._pings:
            return
        now = self.loop.time()
        # A pong answers its ping and every earlier one (RFC 6455 §5.5.3).
        while self._pings:
            key, (future, sent_at) = self._pings.popitem(last=False)
            if not future.done():
                future.set_result(now - sent_at)
            if key == payload:
                break

    def _wake_reader(self):
        waiter = self._message_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush_and_check(self):
        """Writes what the core has for the peer, closes the transport once
        the core is finished, and moves the timer to the next deadline."""
        if self.transport is None or self._lost:
            return
        out = self.protocol.data_to_send()
        if out:
            self.transport.write(out)
        if self.protocol.finished:
            self.transport.close()
            return
        self._schedule()

    def _defer_flush(self):
        """Bytes wait in the core: write them when this loop turn ends."""
        if not self._flush_pending:
            self._flush_pending = True
            pending = _pending_flushes(self.loop)
            if not pending:
                self.loop.call_soon(_flush_turn, pending)
            pending.append(self)

    def _flush_queued(self):
        """Writes what waits in the core."""
        self._flush_pending = False
        if self._lost or self.transport.is_closing():
            return
        out = self.protocol.data_to_send()
        if out:
            self.transport.write(out)

    def _schedule(self):
        delay = self.protocol.timeout()
        if delay is None:
            return
        when = self.loop.time() + delay
        if self._timer is not None:
            if self._timer_when <= when + 0.001:
                return  # fires first; the deadline is asked again then
            self._timer.cancel()
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self):
        self._timer = None
        events = self.protocol.handle_timeout()
        if events:
            self._process(events)
        self._flush_and_check()

    # -- the state ------------------------------------------------------------------

    @property
    def state(self):
        if self._lost:
            return State.CLOSED
        return _BY_NAME[self.protocol.state]

    @property
    def local_address(self):
        return self.transport.get_extra_info("sockname") if self.transport else None

    @property
    def remote_address(self):
        return self.transport.get_extra_info("peername") if self.transport else None

    @property
    def latency(self):
        """The latest keepalive round trip in seconds (0 before any)."""
        return self.protocol.latency

    @property
    def close_code(self):
        received = self.protocol.close_received
        if received is None:
            return 1006 if self._lost else None
        return 1005 if received[0] is None else received[0]

    @property
    def close_reason(self):
        received = self.protocol.close_received
        return None if received is None else received[1]

    # websockets < 13 names, which the seeds use.
    @property
    def open(self):
        return self.state is State.OPEN

    @property
    def closed(self):
        return self.state is State.CLOSED

    def _closed_exception(self):
        received = self.protocol.close_received
        sent = self.protocol.close_sent
        rcvd = None if received is None else Close(1005 if received[0] is None else received[0], received[1])
        sent_frame = None if sent is None else Close(sent[0], sent[1])
        ok = (rcvd is not None and rcvd.code in OK_CLOSE_CODES + (1005,)
              and (sent_frame is None or sent_frame.code in OK_CLOSE_CODES + (1005,)))
        error = (ConnectionClosedOK if ok else ConnectionClosedError)(rcvd, sent_frame)
        if self._failure is not None:
            error.__cause__ = self._failure[0](self._failure[1])
        return error

    # -- receiving --------------------------------------------------------------------

    async def recv(self, decode=None):
        """The next message: ``str`` for text, ``bytes`` for binary
        (``decode`` converts either way). ``ConnectionClosed`` once the
        connection is closed and every message was read."""
        while not self._messages:
            if self._ending or self._lost:
                # The program has read (and answered) every message: a
                # close deferred behind them goes out now.
                if not self._lost:
                    self._write(self.protocol.events_taken())
                    self._schedule()
                raise self._closed_exception()
            if self._message_waiter is not None and not self._message_waiter.done():
                raise ConcurrencyError("cannot call recv while another coroutine is already running recv")
            self._message_waiter = self.loop.create_future()
            try:
                await self._message_waiter
            finally:
                self._message_waiter = None
        message = self._messages.popleft()
        if self._reading_paused and len(self._messages) <= self.max_queue // 4 and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()
        if decode is None:
            return message
        if decode is True and isinstance(message, bytes):
            return message.decode("utf-8")
        if decode is False and isinstance(message, str):
            return message.encode("utf-8")
        return message

    async def recv_streaming(self, decode=None):
        """The next message in one piece (tether reassembles fragments)."""
        yield await self.recv(decode)

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    # -- sending ----------------------------------------------------------------------

    def _write(self, out):
        if out:
            self.transport.write(out)
        if self.protocol.finished:
            self.transport.close()

    def _send_now(self, message, text=None):
        """Frames ``message``; writes it at once if it is the first since
        the last read, else queues it for the end of the loop turn."""
        kind = type(message)
        if kind is str and text is not False:
            as_text = True
        elif kind is bytes and not text:
            as_text = False
        elif isinstance(message, str):
            message, as_text = message.encode("utf-8"), False
        elif isinstance(message, (bytes, bytearray, memoryview)):
            if text:
                message, as_text = bytes(message).decode("utf-8"), True
            else:
                as_text = False
        else:
            raise TypeError("data must be str or bytes-like, not %s" % type(message).__name__)
        if self._lost:
            raise self._closed_exception()
        protocol = self.protocol
        try:
            if self._direct_at != self._reads:
                self._direct_at = self._reads
                out = protocol.send_text(message) if as_text else protocol.send_binary(message)
                if out:
                    self.transport.write(out)
                return
            queued = protocol.queue_text(message) if as_text else protocol.queue_binary(message)
        except (_tether.Error, RuntimeError):
            # Closing, closed, or not open yet.
            raise self._closed_exception() from None
        if queued >= QUEUE_LIMIT:
            self._flush_queued()
        else:
            self._defer_flush()

    async def send(self, message, text=None):
        """Sends a message: ``str`` as text, bytes-like as binary; an
        iterable or async iterable of them as one message."""
        if type(message) in _SIMPLE or isinstance(message, (str, bytes, bytearray, memoryview)):
            self._send_now(message, text)
        elif isinstance(message, dict):
            raise TypeError("data is a dict-like object")
        elif hasattr(message, "__aiter__"):
            parts = [part async for part in message]
            await self.send(_join(parts), text)
            return
        elif hasattr(message, "__iter__"):
            await self.send(_join(list(message)), text)
            return
        else:
            raise TypeError("data must be str, bytes, or an iterable of them")
        if self._writing_paused:
            await self._drain()

    async def _drain(self):
        while self._writing_paused and not self._lost:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def ping(self, data=None):
        """Sends a ping; returns a future that resolves with the round trip
        in seconds when its pong (or a later one) arrives."""
        if data is None:
            data = os.urandom(4)
            while data in self._pings:
                data = os.urandom(4)
        elif isinstance(data, str):
            data = data.encode("utf-8")
        else:
            data = bytes(data)
        if data in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same data")
        if self._lost or self.protocol.state != "open":
            raise self._closed_exception()
        waiter = self.loop.create_future()
        self._pings[data] = (waiter, self.loop.time())
        try:
            self._write(self.protocol.send_ping(data))
        except _tether.Error:
            del self._pings[data]
            raise self._closed_exception() from None
        return waiter

    async def pong(self, data=b""):
        """Sends an unsolicited pong."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._lost or self.protocol.state != "open":
            raise self._closed_exception()
        try:
            self._write(self.protocol.send_pong(bytes(data)))
        except _tether.Error:
            raise self._closed_exception() from None

    # -- closing ----------------------------------------------------------------------

    async def close(self, code=1000, reason=""):
        """Closes: sends a close frame, waits for the peer's (the core gives
        up after ``close_timeout``) and for the transport to close."""
        # From now on reading never pauses: the peer's close frame must be
        # read even behind messages nobody will take.
        self._closing = True
        self._not_open()
        if self._reading_paused and not self._lost and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        if not self._lost and self.transport is not None:
            if self.protocol.state in ("open", "closing"):
                self._write(self.protocol.close(code, reason))
                self._schedule()
            elif self.protocol.state == "connecting":
                self.transport.abort()
        try:
            timeout = None if self.close_timeout is None else self.close_timeout + 1
            await asyncio.wait_for(asyncio.shield(self.connection_lost_waiter), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()
            await self.connection_lost_waiter

    async def wait_closed(self):
        """Waits until the connection is closed."""
        await asyncio.shield(self.connection_lost_waiter)


def _join(parts):
    if not parts:
        return b""
    if all(isinstance(part, str) for part in parts):
        return "".join(parts)
    if all(isinstance(part, (bytes, bytearray, memoryview)) for part in parts):
        return b"".join(parts)
    raise TypeError("message fragments must all be str or all be bytes-like")
