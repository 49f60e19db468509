"""reportflow notifier service."""
