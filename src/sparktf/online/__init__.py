"""The online side: events in over HTTP, per-user state on Structured Streaming, the online store.

``events`` (the HTTP event contract and its checks), ``landing`` (durable, atomic
landing files with group commit), ``stream`` (the Structured Streaming job),
``store`` (SQLite and Redis online stores).
"""
