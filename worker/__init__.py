"""The arq worker process: it runs the jobs that each service keeps in its `jobs` module."""
