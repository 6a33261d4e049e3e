"""ASGI entry point for uvicorn: `uvicorn healthmesh.web.asgi:app`."""

from healthmesh.web.app import create_app

app = create_app()
