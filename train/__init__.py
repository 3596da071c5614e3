"""Training on token shards: stream, model, loop, visual prompting."""
