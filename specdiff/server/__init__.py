"""specdiff serve: an OpenAI-compatible server on the batched decoder."""
