"""Chunk: plan the batches (audience diff, or events grouped by event_id) and the manifest."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from tiktok_destination.observability import logger, tracer
from tiktok_destination.runs import Run
from tiktok_destination.steps import step_chunk


class ChunkInput(BaseModel):
    run: Run
    validation: dict[str, Any] | None = Field(default=None, alias="validate")
    audience: dict[str, Any] | None = None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ChunkInput.model_validate(event)
    logger.append_keys(run_id=request.run.run_id)
    result = step_chunk(request.run, request.audience)
    logger.info("planned", batches=result["batches"], pending_batches=result["pending_batches"])
    return result
