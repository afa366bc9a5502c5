"""Audience: ``ensure`` finds or creates the audience; ``map`` sends one add/delete batch."""

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.runs.run import Run
from tiktok_destination.steps import step_ensure_audience, step_map_audience_batch


class EnsureInput(BaseModel):
    action: Literal["ensure"]
    run: Run


class MapBatch(BaseModel):
    index: int
    action: Literal["add", "delete"]
    key: str
    count: int
    plan_id: str


class MapInput(BaseModel):
    action: Literal["map"]
    run_id: str
    audience_id: str
    batch: MapBatch


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "ensure":
        ensure = EnsureInput.model_validate(event)
        logger.append_keys(run_id=ensure.run.run_id)
        found = step_ensure_audience(ensure.run)
        logger.info("audience ready", audience_id=found["audience_id"], found_by=found["found_by"])
        return found
    request = MapInput.model_validate(event)
    logger.append_keys(run_id=request.run_id, batch=request.batch.index)
    result = step_map_audience_batch(
        request.run_id, request.audience_id, request.batch.model_dump()
    )
    logger.info("batch mapped", action=request.batch.action, **result)
    return result
