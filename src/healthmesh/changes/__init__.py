"""Change feed: an outbox of what changed, written in the same transaction as the change, read by
the Server-Sent Events stream (and by any worker process, since it lives in the database)."""
