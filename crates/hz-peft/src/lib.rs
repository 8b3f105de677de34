//! LoRA adapters in PEFT layout.
