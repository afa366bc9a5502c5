"""Events: send one batch of at most 1,000 offline events to ``event/track/``."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.steps import step_send_event_batch


class EventBatch(BaseModel):
    index: int
    key: str
    event_set_id: str
    count: int
    plan_id: str


class SendInput(BaseModel):
    run_id: str
    batch: EventBatch


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = SendInput.model_validate(event)
    logger.append_keys(run_id=request.run_id, batch=request.batch.index)
    result = step_send_event_batch(request.run_id, request.batch.model_dump())
    logger.info("batch sent", **result)
    return result
