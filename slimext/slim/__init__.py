"""ppdet slim classes provided by slimext (registered on import)."""
