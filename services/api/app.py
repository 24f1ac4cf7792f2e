"""The FastAPI application factory. Heavy resources are built in `lifespan`, never at import."""

from __future__ import annotations

from fastapi import FastAPI

from anytime import __version__


def create_app() -> FastAPI:
    app = FastAPI(title="Anytime", version=__version__, description="Train and serve anytime reasoners.")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    return app
