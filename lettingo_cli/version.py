"""lettingo's version, in a module of its own: the package's __init__ reaches the API, which reaches every stage,
so stages and the store read the version from here (no import cycle through the package)."""

__version__ = "0.1.0"
