"""One module per console page (or group of pages), each with its own router."""
