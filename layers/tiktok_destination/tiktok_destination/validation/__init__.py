"""The validate step: read the input, check every row, write hashes, rejects and dropped values."""
