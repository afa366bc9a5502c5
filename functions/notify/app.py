"""Notify: classify a failure into a workflow action, publish it, record it in the report.

``mode: raise`` is the state machine's last state on failure: it fails the execution with
the action as its error name, and on a redrive resumes the run.
"""

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.steps import step_notify, step_raise_action


class NotifyInput(BaseModel):
    state: dict[str, Any]
    execution_id: str


class RaiseInput(BaseModel):
    mode: Literal["raise"]
    action: str
    cause: str
    notification_id: str
    execution_id: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("mode") == "raise":
        raising = RaiseInput.model_validate(event)
        return step_raise_action(
            raising.action, raising.cause, raising.notification_id, raising.execution_id
        )
    request = NotifyInput.model_validate(event)
    result = step_notify(request.state, request.execution_id)
    logger.warning(
        "workflow action raised", action=result["action"], report_key=result["report_key"]
    )
    return result
