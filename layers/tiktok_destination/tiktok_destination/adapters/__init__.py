"""The only code that touches AWS or HTTP: S3, Secrets Manager, Step Functions,
SNS/EventBridge, the app-wide rate limit, metrics, and the one TikTok client."""
