"""The local demo (`scripts/demo`) and the small demo service it puts behind HAProxy; not installed."""
