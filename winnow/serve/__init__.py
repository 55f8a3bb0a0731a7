"""winnow over HTTP (``winnow serve``): FastAPI on uvicorn, imported only when the command runs.

``settings`` what a server starts with; ``app`` the routes (``create_app``); ``schemas`` request and
response bodies; ``catalog`` collections (one writer, read snapshots); ``models`` served models and their
micro-batchers (``batching``); ``auth``, ``limits``, ``errors``, ``metrics``; ``server`` runs uvicorn;
``process``/``loadgen`` start a server as a child process and put bounded load on it (tests, benchmarks).
See docs/serving.md.
"""
