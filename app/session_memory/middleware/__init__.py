"""ASGI middleware in front of the FastAPI app, one concern per module.

From the outside in: ``RequestId`` (accept or make X-Request-ID, echo it),
``AccessLog`` (metrics and one log line per request), ``HeaderBound`` (431 past the
header-size limit), ``HotPath`` (the hot item routes, straight to the items service).

May import: ``items``, ``problems``, ``observability``, ``auth``, ``config``, ``storage``'s
types; never ``api`` (the FastAPI app is only the next ASGI app in the chain).
"""
