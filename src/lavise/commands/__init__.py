"""Subcommands of ``lavise``: each module defines ``register(subparsers)``; they are discovered automatically."""
