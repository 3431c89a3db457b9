"""Training recipes, on top of the library: ``lm`` (causal LMs: the verifier and the AR drafter),
``diffusion`` (the DiffusionGemma drafter's objective and distillation data), ``corpus`` (the
offline text and tokenizer), ``pocket`` (the pocket pair's staged recipe) with its model card
(``pocket_card``), and ``tiny`` (random-weight checkpoints for tests and offline trials)."""
