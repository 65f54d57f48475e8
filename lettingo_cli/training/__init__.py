"""Training the profile generator: what every stage that trains it (dpo, grpo) shares, so such a stage is a thin
module of its own. Light to import; the TRL side loads torch, transformers, PEFT and TRL only to train.

options.py        the options: what all LoRA training takes, and what each trainer adds
common.py         the base model, checkpoints and --resume, rank 0 writes, the adapter artifact's training run
data.py           what trainers read: pairs in TRL's preference format, generation prompts
trainer.py        the TRL side every trainer shares: LoRA, the step log and checkpoint callbacks, the trainer run
dpo_trainer.py    TRL's DPOTrainer with lettingo's two speed-ups
grpo_trainer.py   TRL's GRPOTrainer whose sampling stops where gen's does
shared_prompt.py  one forward pass per DPO pair: the prompt read once
"""
