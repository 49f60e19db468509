"""reportflow reports service."""
