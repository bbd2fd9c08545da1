"""The REST service of `foleyflow serve`: `jobs` (job folder, bounded queue, worker threads over one pipeline; no web
framework) and `app` (the FastAPI application). Imported only by the serve command: FastAPI stays out of
`import foleyflow`."""
