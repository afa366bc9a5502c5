"""Preflight: resolve the execution input into a run and check access before any data moves."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.steps import step_preflight


class PreflightInput(BaseModel):
    input: dict[str, Any]
    execution_id: str
    #: ``$$.Execution.StartTime``: orders overlapping runs of one audience (newest wins)
    execution_started_at: str | None = None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PreflightInput.model_validate(event)
    run = step_preflight(request.input, request.execution_id, request.execution_started_at)
    if "start" in run:
        # A start that runs nothing (see exports.py): its payload says why.
        logger.info("no run", start=run["start"], reason=run["reason"])
        return run
    logger.info(
        "run resolved",
        run_id=run["run_id"],
        kind=run["kind"],
        destination=run["destination"],
        data_template=run["data_template"],
    )
    return run
