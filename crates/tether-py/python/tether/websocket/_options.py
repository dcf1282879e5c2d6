"""websocket-client's connection options (``header=``, ``cookie=``,
``sslopt=``, ``http_proxy_host=``, ...) turned into the options dict of
tether's core, in one place for ``create_connection`` and ``WebSocketApp``."""

import ssl

_default_timeout = None


def getdefaulttimeout():
    """The timeout of new connections (seconds, or None)."""
    return _default_timeout


def setdefaulttimeout(timeout):
    """Sets the timeout of new connections (seconds, or None)."""
    global _default_timeout
    _default_timeout = timeout


def header_pairs(header):
    """``header`` as (name, value) pairs: a dict, or a list of "Name: value"."""
    if header is None:
        return []
    if isinstance(header, dict):
        return [(str(name), str(value)) for name, value in header.items()]
    pairs = []
    for line in header:
        name, separator, value = str(line).partition(":")
        if not separator:
            raise ValueError("header %r is not 'Name: value'" % (line,))
        pairs.append((name.strip(), value.strip()))
    return pairs


def _proxy_url(options):
    host = options.get("http_proxy_host")
    if not host:
        return None
    kind = options.get("proxy_type") or "http"
    if kind not in ("http", "socks5", "socks5h"):
        raise ValueError("proxy_type must be http, socks5 or socks5h, not %r" % (kind,))
    if kind == "socks5":
        kind = "socks5h"  # tether lets the proxy resolve names
    port = options.get("http_proxy_port") or (1080 if kind.startswith("socks") else 80)
    auth = options.get("http_proxy_auth")
    credentials = ""
    if auth:
        from urllib.parse import quote

        credentials = "%s:%s@" % (quote(auth[0], safe=""), quote(auth[1], safe=""))
    return "%s://%s%s:%d" % (kind, credentials, host, int(port))


def _no_proxy(url, options):
    hosts = options.get("http_no_proxy")
    if not hosts:
        return False
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return any(host == entry or host.endswith("." + entry.lstrip(".")) for entry in hosts)


def core_options(url, timeout=None, subprotocols=None, **options):
    """The options dict ``tether._tether`` takes, from websocket-client's."""
    headers = header_pairs(options.get("header"))
    if options.get("cookie"):
        headers.append(("Cookie", options["cookie"]))
    if options.get("host"):
        headers.append(("Host", options["host"]))
    if options.get("origin") and not options.get("suppress_origin"):
        headers.append(("Origin", options["origin"]))
    sslopt = options.get("sslopt") or {}
    insecure = sslopt.get("cert_reqs", ssl.CERT_REQUIRED) == ssl.CERT_NONE or sslopt.get("check_hostname") is False
    proxy = _proxy_url(options)
    if proxy is not None and _no_proxy(url, options):
        proxy = ""
    if timeout is None:
        timeout = _default_timeout
    return {
        "headers": headers,
        "subprotocols": list(subprotocols or []),
        "open_timeout": timeout,
        "cafile": sslopt.get("ca_certs"),
        "insecure": bool(insecure),
        "proxy": proxy,
        "max_redirects": options.get("redirect_limit"),
    }
