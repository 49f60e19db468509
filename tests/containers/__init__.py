"""The real images under podman: chart pods (kube play) and docker-compose through podman's Docker API."""
