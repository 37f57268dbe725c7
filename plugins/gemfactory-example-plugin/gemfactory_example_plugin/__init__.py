"""Example gemfactory plugin: ``beat_lstm`` (ECG encoder), ``pooled_linear`` (connector) and
``alpaca`` (template), found by gemfactory through the entry points in pyproject.toml."""
