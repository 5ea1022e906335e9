"""A batch's audit page for quality staff (``/batches/{id}``: journey, chart, alarms
with their acknowledgements, verdict, electronic signatures and the form to sign) and
the PDF a buyer or inspector files (``/batches/{id}/report.pdf``)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from alerts.audit import head
from alerts.db import reading
from alerts.models import User
from alerts.repo.users import Role
from alerts.report import BatchReport, batch_report
from alerts.signatures import record_hash, signatures_of
from alerts.wording import local_time
from api.charts import journey_svg
from api.deps import ServicesDep
from api.i18n import language, words
from api.pages import page_user, render, templates
from api.pages_history import batch_chart_spec
from api.routes import batches as batch_routes
from api.routes.signatures import signed_out
from api.schemas import SignatureOut

router = APIRouter(include_in_schema=False)


def _report(svc: ServicesDep, user: User, batch_id: str) -> BatchReport:
    batch_routes.check(svc, user, batch_id)
    store = svc.open_store()
    try:
        return batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000)
    finally:
        store.close()


@router.get("/batches/{batch_id}")
def batch_page(batch_id: str, request: Request, svc: ServicesDep) -> HTMLResponse:
    user = page_user(request, svc, Role.QUALITY)
    report = _report(svc, user, batch_id)
    signed = _signatures(svc, report)
    spec = batch_chart_spec(report.stays, time.time_ns() // 1_000_000)
    return render(
        request,
        "batch.html",
        user,
        r=report,
        chart=journey_svg(report),
        signatures=signed,
        spec=spec,
    )


def _signatures(svc: ServicesDep, report: BatchReport) -> list[SignatureOut]:
    current = record_hash(report)
    with reading(svc.engine) as s:
        return [signed_out(row, current) for row in signatures_of(s, report.batch_id)]


@router.get("/batches/{batch_id}/report.pdf")
def batch_pdf(batch_id: str, request: Request, svc: ServicesDep) -> Response:
    """The report a buyer or inspector files: header, chart, tables, verdict, the time it
    was generated and a hash of the data (WeasyPrint)."""
    from weasyprint import HTML

    user = page_user(request, svc, Role.QUALITY)
    report = _report(svc, user, batch_id)
    lang = language(request)
    html = templates.get_template("report_pdf.html").render(
        lang=lang,
        t=words(lang),
        r=report,
        chart=journey_svg(report),
        fmt=lambda ms: "" if ms is None else local_time(ms),  # the county's time, with its date
        signatures=_signatures(svc, report),
        audit_head=head(svc.engine),
    )
    pdf = HTML(string=html).write_pdf()
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}-report.pdf"'},
    )
