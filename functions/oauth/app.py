"""OAuth callback: the Function URL TikTok redirects the authorizing user's browser to.

Public by nature, so it trusts only a ``state`` this destination signed (see
``tiktok_destination.oauth.state``). It answers a small HTML page either way; only the outcome,
the credential name and the advertiser count are logged, never the token or auth code.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from tiktok_destination.adapters.observability import logger, tracer
from tiktok_destination.config.settings import load_settings
from tiktok_destination.errors import ConfigurationError, DestinationError, OAuthError
from tiktok_destination.oauth.callback import handle_callback
from tiktok_destination.oauth.page import render_page

_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    # The page names the credential and its accounts; no proxy or back button should keep it.
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _response(status: int, body: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(_HEADERS), "body": body}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=LambdaFunctionUrlEvent)
def lambda_handler(event: LambdaFunctionUrlEvent, context: LambdaContext) -> dict[str, Any]:
    if event.raw_path not in ("", "/"):
        # Browsers also ask for /favicon.ico; that is not an authorization attempt.
        return {
            "statusCode": 404,
            "headers": {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
            "body": "Not found",
        }
    query = event.query_string_parameters
    settings = load_settings()
    try:
        result = handle_callback(
            query, settings, now=datetime.now(UTC), base_url=settings.tiktok_base_url
        )
    except OAuthError as err:
        logger.warning("authorization refused", outcome="refused", tiktok_code=err.code)
        return _response(400, render_page(err))
    except ConfigurationError as err:
        logger.error("authorization callback misconfigured", outcome="misconfigured")
        return _response(500, render_page(err))
    except DestinationError as err:
        logger.warning(
            "TikTok failed the authorization",
            outcome="tiktok_error",
            error_type=type(err).__name__,
            tiktok_code=err.code,
        )
        return _response(502, render_page(err))
    logger.info(
        "credential authorized",
        outcome="authorized",
        credential=result.credential,
        advertiser_count=len(result.advertisers),
    )
    return _response(200, render_page(result))
