"""Report: commit the audience snapshot (every batch succeeded) and write the run report."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.runs.run import Run
from tiktok_destination.steps import step_report


class ReportInput(BaseModel):
    run: Run
    validation: dict[str, Any] = Field(alias="validate")
    chunk: dict[str, Any]


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ReportInput.model_validate(event)
    logger.append_keys(run_id=request.run.run_id)
    result = step_report(request.run, request.validation, request.chunk)
    logger.info("report written", report_key=result["report_key"])
    return result
