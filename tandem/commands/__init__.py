"""One module per ``tandem`` subcommand; each exposes ``register(subparsers)``."""
