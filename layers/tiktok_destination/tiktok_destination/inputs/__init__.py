"""What arrives in S3: formats, exports written in parts, and ranges of a large file."""
