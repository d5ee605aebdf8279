"""One adapter per Hugging Face model family."""
