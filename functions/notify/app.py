"""Notify: classify a failure into a workflow action, publish it, record it in the report."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.steps import step_notify

logger = Logger()


class NotifyInput(BaseModel):
    state: dict[str, Any]
    execution_id: str


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = NotifyInput.model_validate(event)
    result = step_notify(request.state, request.execution_id)
    logger.warning(
        "workflow action raised", action=result["action"], report_key=result["report_key"]
    )
    return result
