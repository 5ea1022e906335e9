"""coldchain: open, self-hostable cold-chain monitoring."""

__version__ = "0.1.0"
