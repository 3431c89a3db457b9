"""``specdiff serve``: an OpenAI-compatible server on the batched decoder (docs/server.md).

Modules: ``schemas`` (the request bodies, strict), ``jobs`` (a request to the engine's ``Job``, and
OpenAI-style errors), ``engine`` (the thread that owns the ``BatchRun``), ``text`` (incremental
detokenisation and stop strings), ``responses`` (OpenAI's response and chunk shapes), ``metrics``
(Prometheus, a registry per app), ``app`` (the FastAPI app, ``create_app``, ``ServerConfig``) and
``run`` (uvicorn, draining on SIGTERM: ``serve``).
"""
