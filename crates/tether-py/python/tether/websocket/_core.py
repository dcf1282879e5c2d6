"""websocket-client's short connection: ``create_connection`` and ``WebSocket``,
on tether's blocking client (the interpreter is released while it waits)."""

from .. import _tether
from ._abnf import ABNF, STATUS_NORMAL
from ._exceptions import WebSocketConnectionClosedException, translate
from ._options import core_options, getdefaulttimeout


class WebSocket:
    """One connection: ``connect``, then ``send``/``recv``/``ping``/``close``.

    ``get_mask_key``, ``sockopt``, ``fire_cont_frame`` and
    ``skip_utf8_validation`` are accepted for compatibility; tether's core
    masks with its own random keys, validates UTF-8 incrementally, and
    reassembles fragments.
    """

    def __init__(self, get_mask_key=None, sockopt=None, sslopt=None, fire_cont_frame=False,
                 enable_multithread=True, skip_utf8_validation=False, **_options):
        self._sslopt = sslopt
        self._conn = None
        self._url_is_secure = False
        self._timeout = getdefaulttimeout()

    # -- opening --------------------------------------------------------------------

    def connect(self, url, **options):
        """Opens the connection (TCP, proxy, TLS, the upgrade, redirects)."""
        options.setdefault("sslopt", self._sslopt)
        timeout = options.pop("timeout", self._timeout)
        subprotocols = options.pop("subprotocols", None)
        settings = core_options(url, timeout=timeout, subprotocols=subprotocols, **options)
        try:
            self._conn = _tether.SyncConnection(url, settings)
        except _tether.Error as error:
            raise translate(error) from None
        self._timeout = timeout
        self._url_is_secure = url.lower().startswith("wss://")
        if timeout is not None:
            self._conn.set_timeout(timeout)

    # -- what the server said -------------------------------------------------------

    @property
    def connected(self):
        return self._conn is not None and self._conn.connected

    def getstatus(self):
        return 101 if self._conn is not None else None

    status = property(getstatus)

    def getheaders(self):
        return self._conn.headers if self._conn is not None else None

    headers = property(getheaders)

    def getsubprotocol(self):
        return self._conn.subprotocol if self._conn is not None else None

    subprotocol = property(getsubprotocol)

    def is_ssl(self):
        return False if self._conn is None else self._url_is_secure

    def gettimeout(self):
        return self._timeout

    def settimeout(self, timeout):
        self._timeout = timeout
        if self._conn is not None:
            self._conn.set_timeout(timeout)

    timeout = property(gettimeout, settimeout)

    # -- sending --------------------------------------------------------------------

    def _live(self):
        if self._conn is None:
            raise WebSocketConnectionClosedException("socket is already closed.")
        return self._conn

    def send(self, payload, opcode=ABNF.OPCODE_TEXT):
        """Sends ``payload``: text for ``OPCODE_TEXT`` (a str, or UTF-8
        bytes), binary for ``OPCODE_BINARY``. Returns its length."""
        conn = self._live()
        try:
            if opcode == ABNF.OPCODE_TEXT:
                if not isinstance(payload, str):
                    payload = bytes(payload).decode("utf-8")
                conn.send_text(payload)
            elif opcode == ABNF.OPCODE_BINARY:
                conn.send_binary(payload)
            elif opcode == ABNF.OPCODE_PING:
                conn.ping(_as_bytes(payload))
            elif opcode == ABNF.OPCODE_PONG:
                conn.pong(_as_bytes(payload))
            else:
                raise ValueError("cannot send opcode %r" % (opcode,))
        except _tether.Error as error:
            raise translate(error) from None
        return len(payload)

    def send_text(self, text_data):
        return self.send(text_data, ABNF.OPCODE_TEXT)

    def send_bytes(self, data):
        return self.send(data, ABNF.OPCODE_BINARY)

    send_binary = send_bytes

    def ping(self, payload=""):
        self.send(payload, ABNF.OPCODE_PING)

    def pong(self, payload=""):
        self.send(payload, ABNF.OPCODE_PONG)

    # -- receiving ------------------------------------------------------------------

    def recv(self):
        """The next message: ``str`` for text, ``bytes`` for binary; ``""``
        when the server's close frame arrives."""
        opcode, data = self._recv(False)
        if opcode == ABNF.OPCODE_CLOSE:
            return ""
        return data

    def recv_data(self, control_frame=False):
        """The next frame as (opcode, bytes); pings and pongs too with
        ``control_frame``."""
        opcode, data = self._recv(control_frame)
        if isinstance(data, str):
            data = data.encode("utf-8")
        return opcode, data

    def _recv(self, control_frame):
        conn = self._live()
        try:
            return conn.recv_data(control_frame)
        except _tether.Error as error:
            raise translate(error) from None

    def __iter__(self):
        return self

    def __next__(self):
        return self.recv()

    next = __next__

    # -- closing --------------------------------------------------------------------

    def close(self, status=STATUS_NORMAL, reason=b"", timeout=3):
        """Closes with ``status`` and ``reason`` and waits for the server's
        close frame (at most ``timeout`` seconds, tether's close timeout)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8")
        try:
            conn.close(status, reason)
        except _tether.Error as error:
            raise translate(error) from None

    def send_close(self, status=STATUS_NORMAL, reason=b""):
        self.close(status, reason)

    def abort(self):
        """Drops the connection without a close handshake."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    def shutdown(self):
        self.abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _as_bytes(payload):
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return bytes(payload)


def create_connection(url, timeout=None, class_=WebSocket, **options):
    """Opens a connection to ``url`` and returns it (websocket-client's
    ``create_connection``): ``header``, ``cookie``, ``origin``, ``host``,
    ``subprotocols``, ``sslopt``, ``http_proxy_host``/``port``/``auth``,
    ``proxy_type``, ``http_no_proxy``, ``redirect_limit``."""
    sslopt = options.pop("sslopt", None)
    websocket = class_(sslopt=sslopt, **{k: options.pop(k) for k in ("get_mask_key", "sockopt", "fire_cont_frame",
                                                                       "enable_multithread", "skip_utf8_validation")
                                         if k in options})
    websocket.settimeout(timeout if timeout is not None else getdefaulttimeout())
    websocket.connect(url, timeout=websocket.gettimeout(), **options)
    return websocket
