"""Validate: plan the input's ranges (validating a one-range input at once), validate one
range as a Map child, or add the ranges up after the Map."""

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.runs.run import Run
from tiktok_destination.steps import step_merge_ranges, step_validate, step_validate_range


class PlanInput(BaseModel):
    action: Literal["plan"]
    run: Run


class RangeItem(BaseModel):
    index: int
    validate_id: str


class RangeInput(BaseModel):
    action: Literal["range"]
    run_id: str
    range: RangeItem


class MergeInput(BaseModel):
    action: Literal["merge"]
    run: Run
    validate_id: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action == "range":
        child = RangeInput.model_validate(event)
        logger.append_keys(run_id=child.run_id, range=child.range.index)
        done = step_validate_range(child.run_id, child.range.model_dump())
        logger.info("range validated", rows_received=done["rows_received"])
        return done
    if action == "merge":
        merge = MergeInput.model_validate(event)
        logger.append_keys(run_id=merge.run.run_id)
        result = step_merge_ranges(merge.run, merge.validate_id)
    else:
        plan = PlanInput.model_validate(event)
        logger.append_keys(run_id=plan.run.run_id)
        result = step_validate(plan.run)
        if not result["merged"]:
            logger.info("planned ranges", ranges=result["ranges"])
            return result
    logger.info(
        "validated",
        ranges=result["ranges"],
        rows_received=result["rows_received"],
        rows_rejected=result["rows_rejected"],
    )
    return result
