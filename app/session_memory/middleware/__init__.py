"""ASGI middleware in front of the FastAPI app, one concern per module.

From the outside in: ``RequestId`` (accept or make X-Request-ID, echo it),
``AccessLog`` (metrics and one log line per request), ``HostGuard`` (421 for a Host
the service does not answer for), ``HeadAsGet`` (HEAD wherever GET is), ``RawPath``
(session ids decoded losslessly from the raw path), ``HotPath`` (the hot item
routes, straight to the items service). Header size is bounded before
any of them, by the server's protocol (``server.protocol``).

May import: ``items``, ``problems``, ``observability``, ``auth``, ``config``, ``storage``'s
types; never ``api`` (the FastAPI app is only the next ASGI app in the chain).
"""
