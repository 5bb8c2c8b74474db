"""The aiohttp service: settings, auth, schemas, routes and middlewares, and the command line."""
