"""keyshift's core: everything but the terminal UI. Never imports textual."""
