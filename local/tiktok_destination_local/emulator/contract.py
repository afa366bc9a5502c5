"""What the emulator knows of TikTok's Business API: paths, accepted values, limits, codes.

Every table here is written from TikTok's sources and names them; the emulator never imports
them from the package it tests (tests/contract checks that).
"""

from __future__ import annotations

import re

API_PREFIX = "/open_api/v1.3/"
PORTAL_PATH = "/portal/auth"
#: read-only JSON summary (no hashes) for the demo, which runs the emulator in another process
STATE_PATH = "/_emulator/state"

# The emulator's picture of TikTok is written here from TikTok's sources, never imported
# from the package it tests: a guess shared by the client and the emulator would pass every
# test and still be wrong. Each table names its source; docs/tiktok-contract.md has more.

#: id_schema types and the hex length of their hashes. EMAIL_SHA256, PHONE_SHA256 and
#: IDFA_SHA256 appear in the segment/mapping body of Segment's TikTok Audiences destination
#: (segmentio/action-destinations, packages/destination-actions/src/destinations/
#: tiktok-audiences/addUser/__tests__/index.test.ts); the AAID and MD5 types have no
#: repository source (docs/tiktok-contract.md, "Identifier normalization before hashing").
ID_TYPES: dict[str, int] = {
    "EMAIL_SHA256": 64,
    "PHONE_SHA256": 64,
    "IDFA_SHA256": 64,
    "AAID_SHA256": 64,
    "IDFA_MD5": 32,
    "AAID_MD5": 32,
}

#: event names TikTok accepts in event/track. Sources, by name:
#: - CompletePayment, Contact, Subscribe, SubmitForm: the offline presets of Segment's
#:   tiktok-offline-conversions/index.ts and RudderStack's EVENT_NAME_MAPPING
#:   (rudderlabs/rudder-transformer, src/v0/destinations/tiktok_ads_offline_events/config.js);
#: - ViewContent, ClickButton, Search, AddToWishlist, AddToCart, InitiateCheckout,
#:   AddPaymentInfo, PlaceAnOrder, Download, CompleteRegistration (and the four above): the
#:   web event constants of stephane-monnot/tiktok-php-sdk, src/Constants/EventName.php (a
#:   third-party SDK); ViewContent, Search and AddPaymentInfo also in Segment's
#:   tiktok-conversions/index.ts presets;
#: - Lead, Purchase: TikTok's Events API 2.0 page only (docs/tiktok-contract.md, "Event
#:   names"); no repository source was found for them.
STANDARD_EVENTS: frozenset[str] = frozenset(
    {
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "ClickButton",
        "CompletePayment",
        "CompleteRegistration",
        "Contact",
        "Download",
        "InitiateCheckout",
        "Lead",
        "PlaceAnOrder",
        "Purchase",
        "Search",
        "SubmitForm",
        "Subscribe",
        "ViewContent",
    }
)

#: currencies TikTok accepts for properties.currency: TikTok's own Business SDK,
#: tiktok/tiktok-business-ios-sdk, TikTokBusinessSDK/TikTokConstants.m (TTCurrency, 67 codes)
CURRENCIES: frozenset[str] = frozenset(
    """
    AED ARS AUD BDT BGN BHD BIF BOB BRL CAD CHF CLP CNY COP CRC CZK DKK DZD EGP EUR GBP GTQ
    HKD HNL HUF IDR ILS INR IQD ISK JOD JPY KES KHR KRW KWD KZT LBP MAD MOP MXN MYR NGN NIO
    NOK NZD OMR PEN PHP PKR PLN PYG QAR RON RUB SAR SEK SGD THB TRY TWD TZS UAH USD VES VND
    ZAR
    """.split()  # noqa: SIM905 - 67 codes read better as a block than as a list
)

ROLES = ("ADMIN", "OPERATOR", "ANALYST")
# Limits: TikTok's Events API 2.0, segment/audience and OAuth pages only
# (docs/tiktok-contract.md, "Request and response samples" and "OAuth"); no repository
# source was found for these numbers.
MAX_EVENTS_PER_REQUEST = 1000
MAX_AUDIENCE_NAME = 70
DEDUP_WINDOW_SECONDS = 48 * 3600
AUTH_CODE_TTL_SECONDS = 3600
#: TikTok answers permission scopes as numeric ids
OAUTH_SCOPE: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
#: a body larger than this is refused before parsing (10,000 mapping rows are ~2 MB)
MAX_BODY_BYTES = 64 * 1024 * 1024

#: ``dump_state`` layout; bump it when the layout changes so an old file is refused, not misread
STATE_FORMAT = "tiktok-emulator-state"
STATE_VERSION = 1

USER_KEYS = frozenset(
    {"email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent", "locale"}
)
CONTENT_TYPES = frozenset({"product", "product_group"})

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX = {64: _SHA256, 32: re.compile(r"[0-9a-f]{32}")}

#: the codes TikTok's official SDK names as throttling (tiktok_code.py below): 40100
#: REQUEST_TOO_FREQUENT, 40132 REQUEST_FREQUENCY_LIMITED, and 40016 BIZ_FC_ERROR ("FC" read
#: as frequency control; the SDK has no text for it). A client must wait and retry them.
THROTTLE_CODES: frozenset[int] = frozenset({40016, 40100, 40132})

#: the codes TikTok's official SDK (tiktok_code.py) names as failures on TikTok's side, which
#: a client may retry: 40201 TASK_NOT_READY, 50000 SYS_ERROR, 50002 SYS_TIMEOUT, the
#: database, RDS and object-store codes 52000-52204 (DB_*, RDS_*, TOS_*), 60001 MAINTENANCE.
SERVER_SIDE_CODES: frozenset[int] = frozenset(
    {40201, 50000, 50002}
    | {52000, 52001, 52002, 52003, 52100, 52101, 52102, 52103, 52201, 52202, 52203, 52204}
    | {60001}
)

#: texts used when a fault is injected by code. The codes and their meanings are those of
#: TikTok's official SDK (tiktok/tiktok-business-api-sdk,
#: python_sdk/business_api_client/tiktok_business/tiktok_code.py), which has names only: the
#: texts are ours, except 40100's, which docs/tiktok-contract.md, "Codes" quotes.
FAULT_MESSAGES: dict[int, str] = {
    40000: "Invalid parameters.",
    40001: "No permission to operate. Please check your role on the advertiser.",
    40002: "Invalid parameters.",
    40003: "Forbidden.",
    40007: "The object does not exist.",
    40011: "Too many IDs in one request.",
    40013: "Sandbox advertiser does not exist.",
    40016: "Requests made too frequently. Please try again later.",
    40061: "Invalid batch size.",
    40062: "PII data is not hashed.",
    40100: "Requests made too frequently",
    40102: "Access token has expired.",
    40104: "Access token is empty.",
    40105: "Access token is invalid or has been revoked.",
    40106: "Access token does not belong to this user.",
    40125: "The developer app has no permission for this API.",
    40130: "The scope is not authorized.",
    40132: "Request frequency limited. Please try again later.",
    40201: "Task is not ready. Please try again later.",
    40202: "Write conflict: the object is being modified by another request. Retry later.",
    40300: "Advertiser does not exist or has been deleted.",
    40301: "Advertiser role error.",
    40302: "Customer advertiser does not exist.",
    41000: "Blocked.",
    50000: "System error. Please try again later.",
    50002: "Service is busy. Please try again later.",
    52000: "Database error.",
    52001: "Database read error.",
    52002: "Database write error.",
    52003: "Database partition error.",
    52100: "RDS error.",
    52101: "RDS read error.",
    52102: "RDS write error.",
    52103: "RDS timeout.",
    52201: "Storage error.",
    52202: "Storage upload timeout.",
    52203: "Storage head object error.",
    52204: "Storage put object error.",
    60001: "System maintenance.",
}

_HTTP_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
