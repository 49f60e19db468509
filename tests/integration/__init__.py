"""Integration tests: one service in-process against real PostgreSQL, Redis and the S3 server."""
