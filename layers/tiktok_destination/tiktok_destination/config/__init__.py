"""The configuration document (TOML: credentials, destinations, data templates) and the
deployment settings read from the environment."""
