"""MLP variants: plain (GPT-2, Pythia) and gated (Llama, Gemma, Mistral, Qwen2)."""
