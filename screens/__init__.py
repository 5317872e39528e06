"""The Textual TUI: ``keyshift tui``. Screens read the store and call console services in
workers; they never call a provider and never hold a secret value."""
