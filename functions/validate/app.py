"""Validate: stream the input, normalize and hash identifiers, write hashed rows and rejects."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.observability import logger, tracer
from tiktok_destination.runs import Run
from tiktok_destination.steps import step_validate


class ValidateInput(BaseModel):
    run: Run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ValidateInput.model_validate(event)
    logger.append_keys(run_id=request.run.run_id)
    result = step_validate(request.run)
    logger.info(
        "validated", rows_received=result["rows_received"], rows_rejected=result["rows_rejected"]
    )
    return result
