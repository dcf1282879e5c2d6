"""The asyncio client follows redirects as websockets 15 does, decided by
tether's core as its other clients decide them: at most
``WEBSOCKETS_MAX_REDIRECTS`` (10), relative locations resolved against the
URL answered, ``Authorization`` only to the first origin."""

import asyncio

import pytest

from tether import websockets


async def tell_path_and_authorization(ws):
    await ws.send("%s %s" % (ws.request.path, ws.request.headers.get("Authorization", "-")))
    await ws.wait_closed()


def redirecting(rules):
    """A process_request sending the paths in ``rules`` to their Location."""

    def process_request(connection, request):
        location = rules.get(request.path)
        if location is None:
            return None
        response = connection.respond(302, "Moved\n")
        response.headers["Location"] = location(request) if callable(location) else location
        return response

    return process_request


async def first_message(uri, **kwargs):
    async with websockets.connect(uri, **kwargs) as ws:
        return await ws.recv()


def test_a_relative_and_an_absolute_redirect_are_followed_and_authorization_stays_home():
    async def main():
        async with websockets.serve(tell_path_and_authorization, "127.0.0.1", 0) as elsewhere:
            other = elsewhere.sockets[0].getsockname()[1]
            rules = {
                "/old": "/new",  # relative, same origin
                "/away": "ws://localhost:%d/there" % other,  # another origin
            }
            async with websockets.serve(tell_path_and_authorization, "127.0.0.1", 0,
                                        process_request=redirecting(rules)) as home:
                port = home.sockets[0].getsockname()[1]
                secret = {"Authorization": "Bearer s3cret"}
                assert await first_message("ws://127.0.0.1:%d/old" % port,
                                           additional_headers=secret) == "/new Bearer s3cret"
                assert await first_message("ws://127.0.0.1:%d/away" % port, additional_headers=secret) == "/there -"

    asyncio.run(main())


def test_a_redirect_loop_ends_with_a_security_error_after_the_bound(monkeypatch):
    monkeypatch.setenv("WEBSOCKETS_MAX_REDIRECTS", "3")
    seen = []

    def to_myself(request):
        seen.append(request.path)
        return "/loop%d" % len(seen)

    async def main():
        rules = {"/loop%d" % n: to_myself for n in range(10)}
        rules["/"] = to_myself
        async with websockets.serve(tell_path_and_authorization, "127.0.0.1", 0,
                                    process_request=redirecting(rules)) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(websockets.SecurityError, match="more than 3 redirects"):
                await first_message("ws://127.0.0.1:%d/" % port)

    asyncio.run(main())
    assert len(seen) == 4, seen


def test_a_refusal_that_is_no_redirect_stays_invalid_status():
    async def main():
        def refuse(connection, request):
            return connection.respond(403, "No.\n")

        async with websockets.serve(tell_path_and_authorization, "127.0.0.1", 0, process_request=refuse) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(websockets.InvalidStatus) as refused:
                await first_message("ws://127.0.0.1:%d/" % port)
            assert refused.value.response.status_code == 403

    asyncio.run(main())
