"""tiktok-destination: S3 query output to TikTok custom audiences and offline events."""

import logging

# At DEBUG, botocore logs whole responses (a Secrets Manager answer holds the access token)
# and urllib3 logs request URLs (oauth2/advertiser/get/ carries the app secret as a query
# parameter). Keep them above DEBUG even when a function's log level is DEBUG.
for _name in ("botocore", "boto3", "urllib3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.WARNING)
