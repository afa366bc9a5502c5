"""Chunk: plan the batches (audience diff, or events grouped by event_id) and the manifest.

A large audience is diffed by the DiffShards Map: ``action`` "shard" is one child (one hash
shard), "collect" adds the shards up after the Map; no action is the plan step.
"""

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.runs.run import Run
from tiktok_destination.steps import step_chunk, step_collect_diff, step_diff_shard


class ChunkInput(BaseModel):
    run: Run
    validation: dict[str, Any] | None = Field(default=None, alias="validate")
    audience: dict[str, Any] | None = None


class ShardItem(BaseModel):
    shard: str
    plan_id: str


class ShardInput(BaseModel):
    action: Literal["shard"]
    run_id: str
    shard: ShardItem


class CollectInput(BaseModel):
    action: Literal["collect"]
    run: Run
    plan_id: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action == "shard":
        child = ShardInput.model_validate(event)
        logger.append_keys(run_id=child.run_id, shard=child.shard.shard)
        done = step_diff_shard(child.run_id, child.shard.model_dump())
        logger.info("shard diffed", members=done["members"])
        return done
    if action == "collect":
        collect = CollectInput.model_validate(event)
        logger.append_keys(run_id=collect.run.run_id)
        result = step_collect_diff(collect.run, collect.plan_id)
    else:
        request = ChunkInput.model_validate(event)
        logger.append_keys(run_id=request.run.run_id)
        result = step_chunk(request.run, request.audience)
        if not result["planned"]:
            logger.info("diffing by shard", members_estimate=result["members_estimate"])
            return result
    logger.info("planned", batches=result["batches"], pending_batches=result["pending_batches"])
    return result
