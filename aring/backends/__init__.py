"""How a task waits on a notifier fd on each event loop (one module per backend)."""
