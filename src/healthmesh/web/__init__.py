"""The web adapter: the FastAPI application, its dependencies, problem details and pages."""
