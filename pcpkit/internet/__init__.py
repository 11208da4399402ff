"""Twisted TCP as components, and a flow-controlled relay."""
