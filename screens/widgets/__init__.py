"""Widgets shared by keyshift's screens."""
