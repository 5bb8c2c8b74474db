"""The ceiling: the barest aiohttp handler, served the way the service is (uvloop where there is
one, no access log), so the service's rates have a yardstick measured on the same machine in the
same run. ``python -m bench.ceiling PORT``."""

from __future__ import annotations

import sys

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
