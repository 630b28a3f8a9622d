"""ASGI middleware in front of the app, one concern per module.

From the outside in: ``RequestId`` (accept or make X-Request-ID, echo it),
``AccessLog`` (metrics and one log line per request), ``HostGuard`` (421 for a Host
the service does not answer for), ``HeadAsGet`` (HEAD wherever GET is), ``RawPath``
(session ids decoded losslessly from the raw path). Then ``api.fast_path`` (the
route table's hot routes) and the FastAPI app. Header size is bounded before any
of them, by the server's protocol (``server.protocol``).

May import: ``problems``, ``observability``, ``config``; never ``api`` or the services.
"""
