"""The API's routers, one module per area; :func:`server.api.create_app` includes them.

    deps.py     the server (app.state), the session, ``need(permission)``, ``require``, ``audited``
    models.py   request and response bodies · errors.py  the error body, ApiError, STATUS[Refusal]
    auth · server · tags · equipment · alarms · journal · history · commands · crisis · users · ws
"""
