"""`reportflow-notifier`: one gevent gunicorn worker per process; scale with processes or replicas."""
from reportflow_common.serve import serve_service
from reportflow_common.settings import NOTIFIER


def main() -> None:
    serve_service(NOTIFIER, "reportflow_notifier.app:create_worker_app", worker_class="gevent", workers=1)
