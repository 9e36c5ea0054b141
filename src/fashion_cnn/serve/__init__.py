"""The web page and HTTP API: `create_app(run_dir)` (FastAPI) over a `ClassifierService`."""
