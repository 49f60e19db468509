"""`make up`: embedded PostgreSQL and Redis, development keys, the worker, and the web services on one origin."""
