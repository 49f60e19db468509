"""`reportflow-reports`: the reports API under gunicorn (the container's command and the tests' too)."""
from reportflow_common.serve import serve_service
from reportflow_common.settings import REPORTS


def main() -> None:
    serve_service(REPORTS, "reportflow_reports.app:create_app", warm_up="reportflow_reports.app:warm_up")
