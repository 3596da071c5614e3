"""The VQGAN tokenizer, the tokenize job and tokenizer training."""
