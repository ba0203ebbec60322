"""The HTTP service (level 5): app factory, event store, ANN index, model registry.

Needs the [serve] extra (fastapi, uvicorn, faiss-cpu, psycopg, prometheus-client)."""
