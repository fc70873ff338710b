"""`feedbot` subcommands of each feature; each module has `register(subcommands)`."""
